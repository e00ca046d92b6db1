"""Subscribers: addresses (`store`), their subscriptions to newsletters (`subscriptions`),
CSV import/export (`csvio`) and signed link tokens (`tokens`).

`subscribers.model` holds the tables and the status enums. Suppression (bounced,
complained) is per address; pending, confirmed and unsubscribed are per newsletter.
"""

from __future__ import annotations

from subscribers import csvio, store, subscriptions, tokens
from subscribers.addresses import ascii_address, clean_name, needs_smtputf8, normalise_email
from subscribers.csvio import ImportFailed, ImportReport, export_csv, import_csv
from subscribers.model import (
    BLOCKED,
    STATUSES,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
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
    "Subscription",
    "SubscriptionStatus",
    "Suppression",
    "ascii_address",
    "clean_name",
    "csvio",
    "export_csv",
    "import_csv",
    "make_token",
    "needs_smtputf8",
    "normalise_email",
    "store",
    "subscriptions",
    "tokens",
    "verify_token",
]
