"""Email addresses and display names as we store them.

One normaliser for every entry point (CLI, CSV import, web sign-up), so an
address is keyed the same way wherever it comes from. Plain ASCII addresses take
a regex fast path that only accepts what email-validator would accept too;
anything unusual (IDN, Unicode local part, odd labels) goes to email-validator.
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from digest.errors import InputError
from digest.headertext import BIDI

MAX_EMAIL = 254
MAX_NAME = 200

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
# Local part: dot-atom of at most 64 characters. Domain: at least two LDH labels
# without "--" (R-LDH / Punycode labels go to the slow path), a letters-only TLD.
_FAST_EMAIL = re.compile(
    rf"(?=[^@]{{1,64}}@)[{_ATEXT}]+(?:\.[{_ATEXT}]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,63}))"
)
_SPECIAL_TLDS = frozenset(SPECIAL_USE_DOMAIN_NAMES)
_FORBIDDEN = re.compile(r"[\r\n\0]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def normalise_email(raw: str) -> tuple[str, str]:
    """Return (address as written with its domain lower-cased, lower-cased key).

    Raises InputError(field="email") with email-validator's explanation.
    """
    value = raw.strip()
    if _FORBIDDEN.search(value):
        raise InputError("must not contain line breaks or NUL characters", field="email")
    if not value:
        raise InputError("is empty", field="email")
    if len(value) > MAX_EMAIL:
        raise InputError(
            f"is {len(value)} characters long; at most {MAX_EMAIL} are allowed", field="email"
        )
    match = _FAST_EMAIL.fullmatch(value)
    if match and "--" not in match.group(1) and match.group(2).lower() not in _SPECIAL_TLDS:
        at = match.start(1)
        email = value[:at] + value[at:].lower()
        return email, email.lower()
    try:
        valid = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InputError(str(exc), field="email") from None
    email = valid.normalized
    if len(email) > MAX_EMAIL:
        raise InputError(f"is longer than {MAX_EMAIL} characters", field="email")
    return email, email.lower()


def needs_smtputf8(email: str) -> bool:
    """True when the local part is non-ASCII: only an SMTPUTF8 server can take it.

    A non-ASCII domain alone does not need SMTPUTF8; it is sent IDNA-encoded.
    """
    return not email.rpartition("@")[0].isascii()


def ascii_address(email: str) -> str:
    """The address with its domain IDNA-encoded, for SMTP envelopes and headers."""
    if email.isascii():
        return email
    return _ascii_address(email)


@lru_cache(maxsize=4096)
def _ascii_address(email: str) -> str:
    valid = validate_email(email, check_deliverability=False)
    return f"{valid.local_part}@{valid.ascii_domain}"


def clean_name(raw: str | None) -> str:
    """A display name: one line, no control characters, at most MAX_NAME characters.

    Names end up in To: headers, so line breaks (e.g. quoted newlines in a CSV cell)
    are folded into spaces rather than kept.
    """
    if not raw:
        return ""
    value = raw if raw.isprintable() else _CONTROL.sub(" ", raw)
    value = " ".join(value.split())
    if BIDI.search(value):
        raise InputError(
            "must not contain bidirectional control characters (such as U+202E)", field="name"
        )
    if len(value) > MAX_NAME:
        raise InputError(
            f"is {len(value)} characters long; at most {MAX_NAME} are allowed", field="name"
        )
    return value
