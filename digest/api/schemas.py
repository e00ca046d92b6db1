"""The API's JSON shapes. Request bodies reuse the command line's models (PickIn), so the
API accepts exactly what `digest picks add` accepts; the OpenAPI document is generated
from these classes (digest.api.spec), so it cannot drift from what the code does.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from digest.editorial.picks import PickIn


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


#: Times are answered in UTC (2026-12-04T06:00:00Z), whatever zone they were made in.
When = Annotated[datetime, AfterValidator(_utc)]


class Error(BaseModel):
    """Every error: what went wrong and, for bad input, which field."""

    error: str
    field: str | None = None
    #: 409 for a URL picked before: where.
    edition: str | None = None
    pick_id: int | None = None


class PickCreate(PickIn):
    """A new pick: the fields of `digest picks add` (the same model, PickIn), and `force`."""

    force: bool = Field(
        False,
        description="Add it even if the URL is already in this edition or was sent in one "
        "of the newsletter's last 4 editions (otherwise 409).",
    )


def _optional(field: Any) -> Any:
    copied = copy.copy(field)
    copied.default, copied.default_factory = None, None
    return (field.annotation | None, copied)


#: PATCH: any of PickIn's fields; the rest stay as they are. Checked as a whole by PickIn.
PickPatch: type[BaseModel] = create_model(
    "PickPatch",
    __config__=ConfigDict(extra="forbid"),
    __doc__="Changes to a pick: any of its fields (validated with the others by PickIn).",
    **{name: _optional(f) for name, f in PickIn.model_fields.items()},
    force=(bool, Field(False, description="Allow a URL picked before (as for POST).")),
)

#: A stored pick: its id, edition and place in the email, and PickIn's fields.
_OUT_FIELDS: dict[str, Any] = {
    "id": (int, ...),
    "edition": (str, ...),
    "order": (int, Field(..., ge=1)),
    **{name: (f.annotation, ...) for name, f in PickIn.model_fields.items()},
}
PickOut: type[BaseModel] = create_model(
    "PickOut",
    __doc__="A pick of an edition, with its place in the email's order (1 = first).",
    **_OUT_FIELDS,
)


class EditionRef(BaseModel):
    key: str
    status: str
    planned_at: When | None = None


class PickList(BaseModel):
    """The next edition's picks in the email's order."""

    newsletter: str
    edition: EditionRef
    picks: list[PickOut]  # type: ignore[valid-type]


class MoveIn(BaseModel):
    """Where to move a pick: a 1-based position in the email's order (within its section)."""

    model_config = ConfigDict(extra="forbid")

    position: int = Field(..., ge=1, le=10_000)


class MoveOut(BaseModel):
    picks: list[PickOut]  # type: ignore[valid-type]
    #: Why the pick did not land exactly there (it stays within its section), else "".
    note: str = ""


class NewsletterOut(BaseModel):
    slug: str
    name: str
    is_default: bool
    language: str
    schedule: str
    timezone: str
    next_edition: EditionRef


class NewsletterList(BaseModel):
    newsletters: list[NewsletterOut]


class EditionSummary(BaseModel):
    key: str
    status: str
    subject: str
    planned_at: When | None = None
    send_started_at: When | None = None
    sent_at: When | None = None
    picks: int


class EditionList(BaseModel):
    newsletter: str
    editions: list[EditionSummary]


class DeliveryCounts(BaseModel):
    pending: int = 0
    deferred: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0


class StoryStats(BaseModel):
    """One story of the edition, in the email's order, with its counted clicks."""

    pick_id: int
    position: int
    title: str
    section: str
    url: str
    clicks: int
    share: float  # of the edition's clicks


class EditionStats(BaseModel):
    """What is known about how an edition did (more fields appear as digest measures more)."""

    model_config = ConfigDict(extra="allow")

    recipients: int
    delivered: int
    failed: int
    skipped: int
    owed: int
    #: How the story links were made (DIGEST_CLICK_STATS when it was rendered).
    click_stats: str = "off"
    #: Story clicks, when they were counted (None: not measured).
    clicks: int | None = None
    #: Clicks (per-subscriber: readers who clicked) per delivered message.
    click_through: float | None = None
    stories: list[StoryStats] | None = None


class EditionCounts(BaseModel):
    picks: int
    deliveries: DeliveryCounts


class EditionDetail(EditionSummary):
    newsletter: str
    preheader: str
    view_url: str | None = None
    counts: EditionCounts
    stats: EditionStats


class SubscriberIn(BaseModel):
    """A sign-up. Without `confirmed`, a double opt-in email goes out (as from the sign-up
    page); `confirmed: true` records consent given elsewhere and needs `consent_source`."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str = Field(..., max_length=320)
    name: str = Field("", max_length=200)
    confirmed: bool = False
    consent_source: str | None = Field(None, max_length=500)
    attributes: dict[str, str] = Field(default_factory=dict, max_length=50)


class SubscribeOut(BaseModel):
    email: str
    newsletter: str
    status: str
    #: A confirmation email was sent just now (double opt-in).
    confirmation_sent: bool


class SubscriptionOut(BaseModel):
    newsletter: str
    status: str
    source: str
    consent_at: When | None = None
    consent_source: str
    created_at: When
    status_changed_at: When | None = None


class SubscriberOut(BaseModel):
    email: str
    name: str
    attributes: dict[str, str]
    #: bounced or complained: no newsletter at all any more.
    suppression: str | None = None
    created_at: When
    subscriptions: list[SubscriptionOut]


class EraseOut(BaseModel):
    email: str
    #: Whether anything was stored about the address.
    found: bool
    #: What was removed or anonymised, by kind.
    removed: dict[str, int]


class PersonExport(BaseModel):
    """Everything stored about one address (GDPR article 15), by kind of data."""

    model_config = ConfigDict(extra="allow")

    email: str
    exported_at: When
    found: bool
