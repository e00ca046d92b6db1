"""Subscribers: the store (all SQL), CSV import/export and signed link tokens.

Import the modules (`from subscribers import store, csvio, tokens`) or the names
below; `subscribers.model` holds the table and `SubscriberStatus`.
"""

from __future__ import annotations

from subscribers import csvio, store, tokens
from subscribers.addresses import ascii_address, clean_name, needs_smtputf8, normalise_email
from subscribers.csvio import ImportFailed, ImportReport, export_csv, import_csv
from subscribers.model import BLOCKED, STATUSES, Subscriber, SubscriberStatus
from subscribers.tokens import CONFIRM, UNSUBSCRIBE, BadToken, make_token, verify_token

__all__ = [
    "BLOCKED",
    "CONFIRM",
    "STATUSES",
    "UNSUBSCRIBE",
    "BadToken",
    "ImportFailed",
    "ImportReport",
    "Subscriber",
    "SubscriberStatus",
    "ascii_address",
    "clean_name",
    "csvio",
    "export_csv",
    "import_csv",
    "make_token",
    "needs_smtputf8",
    "normalise_email",
    "store",
    "tokens",
    "verify_token",
]
