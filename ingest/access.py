"""Access rules: who may read the documents under a path or source prefix.

Access is explicit, durable state, never a side effect of how a command was run. A rule
``prefix -> groups`` is stored in the registry database; a document's groups are those of
the most specific rule covering its source (the file's real path, or a source id), and a
document that no rule covers is visible to admins only (fail closed). ``enclave ingest
PATH --groups G`` records the rule ``PATH -> G``; a later run without ``--groups`` (a
routine sync of a parent folder) applies the stored rules, so nothing is re-grouped by
it. Changing or removing a rule re-applies the rules to the registered documents under
its prefix: the store's payloads are rewritten in place (no re-embedding), the registry
last, and the change is recorded with who made it.

The order makes an interrupted change safe to repeat: the rule is recorded first, then
each document's chunks get their new groups, then its registry row. A document whose
registry row disagrees with the rules is "pending" and is fixed by the next rule change,
``enclave access apply`` or an ingestion run over it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from backends.sql.registry import RegisteredDocument, Registry
from core.errors import InputError
from core.protocols import VectorStore
from core.types import AccessRule, covers, group_names

logger = logging.getLogger(__name__)

MAX_PREFIX = 2048


class RuleSet:
    """A snapshot of the rules, answering "which groups may read this source"."""

    def __init__(self, rules: Iterable[AccessRule]) -> None:
        self._by_prefix = {r.prefix: r for r in rules}

    def rule_for(self, source: str) -> AccessRule | None:
        """The most specific rule covering ``source``, if any."""
        for candidate in _prefixes(source):
            rule = self._by_prefix.get(candidate)
            if rule is not None:
                return rule
        return None

    def groups_for(self, source: str) -> tuple[str, ...]:
        """The groups that may read ``source``: ``()`` (admins only) when no rule covers it."""
        rule = self.rule_for(source)
        return rule.groups if rule is not None else ()

    def with_rule(self, prefix: str, groups: tuple[str, ...]) -> RuleSet:
        """These rules with ``prefix -> groups`` set (a dry run's view of a change)."""
        merged = dict(self._by_prefix)
        merged[prefix] = AccessRule(prefix, groups)
        return RuleSet(merged.values())


def _prefixes(source: str) -> Iterator[str]:
    """``source`` and each of its parents at ``/`` boundaries, most specific first."""
    yield source
    current = source.rstrip("/")
    if current != source:
        yield current
    while (cut := current.rfind("/")) >= 0:
        current = current[:cut]
        if not current:
            yield "/"
            return
        yield current


def rule_prefix(raw: str | Path) -> str:
    """The prefix a rule for ``raw`` is stored under: a local path made absolute and
    resolved (links resolved, as document sources are), or a source id such as a URL
    as given; no trailing ``/``. Raises :class:`InputError` for an unusable value."""
    text = os.fsdecode(raw) if isinstance(raw, Path) else raw
    if "\x00" in text:
        raise InputError(f"the path {text!r} contains a NUL byte; name the folder or file again")
    text = text.strip()
    if not text:
        raise InputError("the path of an access rule is empty; name a folder, file or source")
    if "://" in text:
        prefix = text.rstrip("/")
    else:
        given = Path(text).expanduser()
        try:
            if given.is_symlink() and not given.is_dir():
                raise InputError(
                    f"{text} is a symbolic link; a rule names where a document lives, so set "
                    "it on the link's target itself"
                )
            resolved = given.resolve()
        except (OSError, RuntimeError) as exc:  # a name too long, a link loop
            shown = text if len(text) <= 80 else text[:80] + "..."
            raise InputError(f"cannot use the path {shown!r}: {exc.__class__.__name__}") from None
        prefix = os.fsencode(resolved).decode("utf-8", "backslashreplace")
    if len(prefix) > MAX_PREFIX:
        raise InputError(f"the path {text[:80]!r}... is over {MAX_PREFIX} characters")
    return prefix


@dataclass(frozen=True, slots=True)
class Change:
    """What a rule change did: the rule before (None: there was none), the groups now
    (None: the rule was removed), and the documents whose groups changed."""

    prefix: str
    before: tuple[str, ...] | None
    after: tuple[str, ...] | None
    documents: int


class AccessControl:
    """Records rule changes and applies them to the registered documents."""

    def __init__(self, registry: Registry, store: VectorStore | None = None) -> None:
        """``store``: where :meth:`apply` rewrites payloads (none: rules are read and
        recorded only, e.g. by ``enclave access list``)."""
        self._registry = registry
        self._store = store

    def rules(self) -> RuleSet:
        return RuleSet(self._registry.rules())

    def set_rule(
        self, raw: str | Path, groups: Sequence[str], actor: str, origin: str = "admin"
    ) -> Change:
        """Let ``groups`` read everything under ``raw`` (recorded, then applied)."""
        prefix = rule_prefix(raw)
        names = group_names(groups)
        if not names:
            raise InputError(
                f"an access rule needs at least one group; to keep {prefix} for admins only, "
                "remove its rule instead (`enclave access remove`)"
            )
        affected = self._affected(self.rules().with_rule(prefix, names), prefix)
        previous = self._registry.set_rule(prefix, names, actor, origin, len(affected))
        changed = self.apply(prefix)
        logger.info(
            "access rule %s -> %s set by %s (%d documents changed)",
            prefix,
            ",".join(names),
            actor,
            changed,
        )
        return Change(prefix, previous.groups if previous else None, names, changed)

    def remove_rule(self, raw: str | Path, actor: str) -> Change:
        """Remove the rule at ``raw``: its documents fall back to the next rule up, or to
        admins only."""
        prefix = rule_prefix(raw)
        remaining = RuleSet(r for r in self._registry.rules() if r.prefix != prefix)
        affected = self._affected(remaining, prefix)
        previous = self._registry.remove_rule(prefix, actor, len(affected))
        changed = self.apply(prefix)
        logger.info("access rule %s removed by %s (%d documents changed)", prefix, actor, changed)
        return Change(prefix, previous.groups, None, changed)

    def listing(self) -> list[tuple[AccessRule, int]]:
        """Every rule with the number of registered documents it decides now."""
        rules = self._registry.rules()
        ruleset = RuleSet(rules)
        governed: dict[str, int] = {}
        for record in self._registry.all():
            rule = ruleset.rule_for(record.document.source)
            if rule is not None:
                governed[rule.prefix] = governed.get(rule.prefix, 0) + 1
        return [(rule, governed.get(rule.prefix, 0)) for rule in rules]

    def pending(self, prefix: str | None = None) -> list[RegisteredDocument]:
        """Registered documents (under ``prefix``) whose groups disagree with the rules."""
        return self._affected(self.rules(), prefix)

    def apply(self, prefix: str | None = None) -> int:
        """Give every registered document (under ``prefix``) the groups the rules give
        it: the store's payload first, the registry last. The number changed."""
        rules = self.rules()
        changed = 0
        store = self._store
        for record in self._affected(rules, prefix):
            document = record.document
            groups = rules.groups_for(document.source)
            assert store is not None, "AccessControl.apply needs the store it rewrites"
            store.set_access(document.doc_id, groups, document.tags)
            self._registry.put(replace(document, groups=groups), record.chunks)
            changed += 1
        return changed

    def _affected(self, rules: RuleSet, prefix: str | None) -> list[RegisteredDocument]:
        return [
            r
            for r in self._registry.all()
            if (prefix is None or covers(prefix, r.document.source))
            and rules.groups_for(r.document.source) != r.document.groups
        ]


def cli_actor() -> str:
    """Who a rule change from the command line is recorded as."""
    try:
        user = os.getlogin()
    except OSError:
        user = os.environ.get("USER") or str(os.getuid())
    return f"cli ({user})"
