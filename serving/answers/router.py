"""Routing: which model answers a question."""

from __future__ import annotations

import re
from collections.abc import Mapping

from core.errors import InputError
from core.protocols import Generator
from core.settings import LLMSettings

_COMPLEX = re.compile(
    r"\b(compare|comparison|differences?|versus|vs\.?|pros and cons|step[- ]by[- ]step|"
    r"explain why|trade-?offs?|and also|as well as)\b",
    re.IGNORECASE,
)


def is_complex(question: str, has_history: bool, complex_chars: int) -> bool:
    """Long, multi-part or comparative questions, and follow-ups, go to a large model."""
    q = question.strip()
    return (
        has_history or len(q) > complex_chars or q.count("?") > 1 or _COMPLEX.search(q) is not None
    )


class Router:
    """Picks the model: the one requested (if allowed), else by the question's complexity."""

    def __init__(self, generators: Mapping[str, Generator], settings: LLMSettings) -> None:
        if not generators:
            raise InputError("no LLM is configured (ENCLAVE_LLM__MODELS)")
        self._generators = dict(generators)
        self._settings = settings
        names = list(generators)
        self._small = next((n for n in names if generators[n].role == "small"), names[0])
        self._large = next((n for n in names if generators[n].role == "large"), self._small)
        self.default = settings.default_model or self._small

    @property
    def names(self) -> list[str]:
        return list(self._generators)

    def generators(self) -> list[Generator]:
        return list(self._generators.values())

    def get(self, name: str) -> Generator:
        return self._generators[name]

    def small(self) -> Generator:
        return self._generators[self._small]

    def choose(self, question: str, has_history: bool, requested: str | None) -> Generator:
        if requested:
            if requested not in self._generators:
                raise InputError(
                    f"unknown model {requested!r}; the models you can use are "
                    f"{', '.join(self._generators)}"
                )
            return self._generators[requested]
        if is_complex(question, has_history, self._settings.complex_chars):
            return self._generators[self._large]
        return self._generators[self.default]
