"""Replace personal data in free text with placeholders before it is stored.

:func:`redact` is a best-effort filter for audit logs and feedback, not a guarantee.
It looks for shapes and, where the kind has one, checks the checksum, so that
ordinary numbers survive.

Caught:

- ``[EMAIL]``: ``local@domain.tld`` addresses (ASCII local part and domain).
- ``[IBAN]``: ISO 13616 IBANs, upper case, written compact (``DE89370400440532013000``)
  or in groups (``DE89 3704 0044 0532 0130 00``), 15-34 characters, whose mod-97
  check digits are right.
- ``[CARD]``: payment card numbers of 13-19 digits, compact or in groups separated by
  spaces or dashes (4-4-4-4[-1..3], 4-6-5, 4-6-4), that pass the Luhn check.
- ``[PHONE]``: international numbers (``+CC`` or ``00CC`` then 8-15 digits, with
  spaces, dots, dashes or parentheses, e.g. ``+44 (0)20 7946 0958``); national numbers
  of 8-12 digits that start with a trunk ``0`` (``020 7946 0958``, ``06 12 34 56 78``)
  or an area code in parentheses (``(555) 123-4567``); North American
  ``555-123-4567`` / ``555.123.4567`` / ``1-800-555-0199``.

Not caught (left as they are): names, postal addresses, ID or passport numbers,
IBANs and cards that fail their checksum, lower-case IBANs, national phone numbers
that start with neither ``0`` nor ``(`` and are not in North American shape, numbers
under 8 digits. Ordinary numbers are left alone: years, amounts (``150 euros``,
``10 000 000``), section numbers (``4.2``), versions (``1.2.3``), IP addresses, dates
(``2024-05-01``, ``01.05.2024``) and time ranges (``09.30-17.30``).

The kinds are replaced in the order e-mail, IBAN, card, phone, so that an IBAN or a
card number is never half-replaced by the phone rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable

EMAIL = "[EMAIL]"
IBAN = "[IBAN]"
CARD = "[CARD]"
PHONE = "[PHONE]"

_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])"
)
_IBAN_RE = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![\w])")
_CARD_RE = re.compile(
    r"(?<![\w+.,-])(?:"
    r"\d{13,19}"
    r"|\d{4}(?P<s1>[ -])\d{4}(?:(?P=s1)\d{4}){1,3}(?:(?P=s1)\d{1,3})?"
    r"|\d{4}(?P<s2>[ -])\d{6}(?P=s2)\d{4,5}"
    r")(?![\w])"
)
_PHONE_RE = re.compile(
    r"(?<![\w+.,/(-])"
    r"\+?(?:\(\+?\d{1,5}\)|\d{1,5})"
    r"(?:[ .-]?(?:\(\d{1,5}\)|\d{1,5})){1,10}"
    r"(?![\w])"
)
_DATE_RE = re.compile(r"\d{1,2}([./-])\d{1,2}\1\d{2,4}|\d{4}([./-])\d{1,2}\2\d{1,2}")
_NANP_RE = re.compile(r"(?:1([ .-]))?\d{3}([ .-])\d{3}\2\d{4}")
_SEPARATORS = re.compile(r"[ .-]")


def redact(text: str) -> str:
    """``text`` with e-mail addresses, IBANs, card numbers and phone numbers replaced.

    Placeholders: ``[EMAIL]``, ``[IBAN]``, ``[CARD]``, ``[PHONE]``. See the module
    docstring for exactly what is and is not caught.
    """
    text = _EMAIL_RE.sub(EMAIL, text)
    text = _replace_valid(_IBAN_RE, text, _is_iban, IBAN)
    # What is left of IBAN shape failed its checksum: keep its digits from the card
    # and phone rules too, rather than redacting a fragment of it.
    text = _replace_valid(_CARD_RE, text, _is_card, CARD, protect=_IBAN_RE)
    return _replace_valid(_PHONE_RE, text, _is_phone, PHONE, protect=_IBAN_RE)


def _replace_valid(
    pattern: re.Pattern[str],
    text: str,
    is_valid: Callable[[str], bool],
    placeholder: str,
    protect: re.Pattern[str] | None = None,
) -> str:
    """Replace every match of ``pattern`` that is valid, or whose longest valid prefix
    (cut at a separator) is, with ``placeholder``; matches overlapping a match of
    ``protect`` are left alone."""
    protected = [m.span() for m in protect.finditer(text)] if protect is not None else []
    out: list[str] = []
    pos = 0
    search_from = 0
    while (match := pattern.search(text, search_from)) is not None:
        candidate = match.group()
        if any(start < match.end() and match.start() < end for start, end in protected):
            search_from = match.start() + 1
            continue
        found = _longest_valid_prefix(candidate, is_valid)
        if found is None:
            search_from = match.start() + 1
            continue
        out.append(text[pos : match.start()])
        out.append(placeholder)
        pos = search_from = match.start() + len(found)
    out.append(text[pos:])
    return "".join(out)


def _longest_valid_prefix(candidate: str, is_valid: Callable[[str], bool]) -> str | None:
    if is_valid(candidate):
        return candidate
    cuts = [m.start() for m in _SEPARATORS.finditer(candidate)]
    for cut in reversed(cuts):
        prefix = candidate[:cut]
        if prefix and is_valid(prefix):
            return prefix
    return None


def _is_iban(candidate: str) -> bool:
    compact = candidate.replace(" ", "")  # _IBAN_RE vouches for the country and check digits
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


def _is_card(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_phone(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    if candidate.startswith("+"):
        return 8 <= len(digits) <= 15
    if candidate.startswith("00") and len(candidate) > 2 and candidate[2] != "0":
        return 8 <= len(digits) - 2 <= 15
    if _DATE_RE.fullmatch(candidate):
        return False
    if _NANP_RE.fullmatch(candidate):
        return True
    if not 8 <= len(digits) <= 12:
        return False
    if candidate.startswith("("):
        area, _, rest = candidate[1:].partition(")")
        rest = rest.lstrip(" ")
        return len(area) >= 2 and "(" not in rest and _uniform_groups(rest)
    return (
        candidate.startswith("0")
        and candidate[1:2].isdigit()
        and "(" not in candidate
        and _uniform_groups(candidate)
    )


def _uniform_groups(number: str) -> bool:
    """One kind of separator, and every group at least two digits long."""
    separators = set(_SEPARATORS.findall(number))
    groups = _SEPARATORS.split(number)
    return len(separators) <= 1 and all(len(g) >= 2 and g.isdigit() for g in groups)
