"""The one clock: timezone-aware UTC now.

Everything that stores or compares a moment uses this, so the store never sees a naive
local time and tests have one place to look.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """A datetime as aware UTC; naive values are taken to be UTC already."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
