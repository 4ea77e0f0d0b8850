"""PII redaction: each kind caught in real sentences, ordinary numbers left alone."""

from __future__ import annotations

import pytest

from core.redact import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Please write to jane.doe+hr@example.co.uk or J.Smith@corp-mail.example.org.",
            "Please write to [EMAIL] or [EMAIL].",
        ),
        ("My address is bob_99@mail.example.com, thanks", "My address is [EMAIL], thanks"),
    ],
)
def test_email_addresses(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Send the refund to DE89 3704 0044 0532 0130 00 by Friday.",
            "Send the refund to [IBAN] by Friday.",
        ),
        ("Account DE89370400440532013000, please.", "Account [IBAN], please."),
        ("IBAN: GB82 WEST 1234 5698 7654 32 BY next week", "IBAN: [IBAN] BY next week"),
        ("Norway: NO93 8601 1117 947 is short.", "Norway: [IBAN] is short."),
    ],
)
def test_ibans_with_valid_check_digits(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("My card is 4111 1111 1111 1111, expiry 2027.", "My card is [CARD], expiry 2027."),
        ("Charge 5555-5555-5555-4444 today", "Charge [CARD] today"),
        ("Visa 4012888888881881 and Amex 3782 822463 10005.", "Visa [CARD] and Amex [CARD]."),
    ],
)
def test_card_numbers_that_pass_luhn(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Call me on +44 20 7946 0958 after lunch.", "Call me on [PHONE] after lunch."),
        ("Mobile: +33 6 12 34 56 78.", "Mobile: [PHONE]."),
        ("Switchboard +44 (0)20 7946 0958, ext. 12", "Switchboard [PHONE], ext. 12"),
        ("From abroad dial 0049 30 1234567.", "From abroad dial [PHONE]."),
        ("Ring the office on 020 7946 0958 before 5.", "Ring the office on [PHONE] before 5."),
        ("Her number is 06 12 34 56 78", "Her number is [PHONE]"),
        ("Or 0612345678 for the mobile.", "Or [PHONE] for the mobile."),
        ("US desk: (555) 123-4567 or 555.123.4567", "US desk: [PHONE] or [PHONE]"),
        ("Toll free 1-800-555-0199.", "Toll free [PHONE]."),
    ],
)
def test_phone_numbers(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_several_kinds_in_one_message() -> None:
    text = (
        "Hi, I'm at anna@example.org or +49 30 1234567; please pay DE89 3704 0044 0532 "
        "0130 00 and not my card 4111-1111-1111-1111."
    )
    assert redact(text) == (
        "Hi, I'm at [EMAIL] or [PHONE]; please pay [IBAN] and not my card [CARD]."
    )


@pytest.mark.parametrize(
    "text",
    [
        "In 2024 the fee was 150 euros.",
        "See section 4.2 and clause 12.3.1 of the handbook.",
        "The policy changed on 2024-05-01 and again on 01.05.2025 and 31/12/2025.",
        "Upgrade from version 1.2.3 to v2.10.14 (build 20240501).",
        "The budget is 10 000 000 euros, or 1,250,000.50 dollars.",
        "The office is open 09.30-17.30 on weekdays.",
        "Ratios 0.5 1.5 2.5 3.5 were tested on 192.168.100.200.",
        "Order 12345678 shipped; ticket #4471 is closed.",
        "Between 2024-05-01 2024-06-01 and 2024-07-01 nothing happened.",
    ],
)
def test_ordinary_numbers_are_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "Bad check digits: DE88 3704 0044 0532 0130 00 here.",
        "Typo: DE89370400440532013001.",
        "IBAN GB82 WEST 1234 5698 7654 33 then",
    ],
)
def test_ibans_with_wrong_check_digits_are_not_redacted(text: str) -> None:
    # nor half-eaten by the card or phone rules
    assert redact(text) == text


@pytest.mark.parametrize(
    "text",
    ["Card 4111 1111 1111 1112 failed.", "Number 4012888888881882 is a typo."],
)
def test_card_numbers_failing_luhn_are_not_redacted(text: str) -> None:
    assert redact(text) == text


def test_redaction_is_idempotent_and_keeps_plain_text() -> None:
    once = redact("Mail a@b.io or call +44 20 7946 0958.")
    assert redact(once) == once
    assert redact("") == ""
    assert redact("Nothing personal here.") == "Nothing personal here."
