"""Settings: environment variables with the DIGEST_ prefix, also read from `.env`.

Validated once at start; a bad value becomes one line naming the setting and what
is allowed (SettingsError, exit code 2).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from email.headerregistry import Address
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from digest.errors import SettingsError
from digest.headertext import check_header_safe

DEFAULT_SECTIONS = ["News", "Features", "Analysis", "Opinion"]
MIN_SECRET_LENGTH = 32
_CRON_FIELD = re.compile(r"^[\w*/,\-]+$")
_HOST = re.compile(r"[a-z0-9]([a-z0-9.\-]{0,251}[a-z0-9])?|[0-9a-f:.]+")


class Settings(BaseSettings):
    """Everything the operator configures. Field names map to DIGEST_<NAME>."""

    model_config = SettingsConfigDict(
        env_prefix="DIGEST_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    database_url: str = "sqlite:///digest.db"
    db_pool_size: int = Field(5, ge=1, le=200)

    smtp_host: str | None = None
    smtp_port: int | None = Field(None, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    smtp_timeout: float = Field(30.0, gt=0)
    smtp_tls_verify: bool = True
    smtp_messages_per_connection: int = Field(0, ge=0)
    #: ESMTP PIPELINING where the server offers it; false only for a relay that mishandles it.
    smtp_pipelining: bool = True
    outbox_dir: Path = Path("outbox")

    #: The newsletter commands work on when they are not told (--newsletter SLUG).
    newsletter: str | None = None

    from_: str = Field("The Weekly Digest <digest@localhost>", alias="DIGEST_FROM")
    reply_to: str | None = None
    #: Envelope sender (where DSNs go); default: the DIGEST_FROM address. With
    #: bounce_verp each message goes out as local+b-{signed reference}@domain.
    bounce_address: str | None = None
    bounce_verp: bool = True
    base_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr | None = None
    list_name: str = "The Weekly Digest"
    list_id: str | None = None
    unsubscribe_mailto: str | None = None
    postal_address: str = "The Weekly Digest, 1 Example Street, 10115 Berlin, Germany"
    privacy_url: str | None = None
    support_url: str | None = None
    sections: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_SECTIONS))
    #: A folder of templates that override the built-in ones file by file (None: built-in only).
    templates_dir: Path | None = None

    timezone: str = "Europe/Moscow"
    schedule: str = "0 9 * * fri"
    misfire_grace: float = Field(6 * 3600, ge=0)
    alert_email: str | None = None
    #: Second within the minute the schedule fires at (cron-style field; for tests).
    schedule_second: str = "0"
    #: A scheduler that stops renewing its leadership for this long is replaced by a standby.
    scheduler_lease: float = Field(60.0, ge=1)
    #: After a send broke off (SMTP unreachable...), the scheduler tries again this often.
    scheduler_retry: float = Field(300.0, ge=1)

    concurrency: int = Field(10, ge=1, le=1000)
    rate_limit: float = Field(0, ge=0)
    max_attempts: int = Field(6, ge=1, le=100)
    retry_backoff: float = Field(30.0, ge=0)
    retry_backoff_max: float = Field(3600.0, ge=0)
    bounce_threshold: int = Field(2, ge=1)
    #: Several senders on one database (digest.claims): a claimed batch whose sender
    #: stopped renewing it for this long is taken over by another sender.
    lease_seconds: float = Field(60.0, gt=0, le=86400)
    #: How often a sender renews its leases (capped at a third of the lease).
    heartbeat_seconds: float = Field(10.0, gt=0)
    #: How often an idle `digest worker` (or a send waiting for others) looks for work.
    worker_poll_seconds: float = Field(2.0, gt=0, le=3600)
    #: Deliveries claimed at a time by one sender.
    worker_batch_size: int = Field(200, ge=1, le=100_000)

    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_key_file: Path | None = None
    #: Where DSNs and abuse reports arrive: maildir:/path or imaps://user:pass@host/INBOX.
    bounce_mailbox: SecretStr | None = None
    #: Soft bounces (4.x.x DSNs) a subscriber may collect before being marked bounced.
    #: Seconds between bounce-mailbox runs of the scheduler (0 = never).
    bounce_interval: float = Field(3600.0, ge=0)
    soft_bounce_threshold: int = Field(3, ge=1)
    #: Command for preflight's offline spam score; "off" skips it.
    spamassassin: str = "spamassassin"

    #: `digest serve` also runs the weekly scheduler in-process (one-process deployments).
    serve_scheduler: bool = False
    #: Proxies whose X-Forwarded-For/-Proto `digest serve` trusts (comma-separated, or *).
    forwarded_allow_ips: str = "127.0.0.1"
    #: Host names the web app answers to besides DIGEST_BASE_URL's (comma-separated).
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Seconds a client may take to send a request's headers, and then its body.
    header_timeout: float = Field(10.0, gt=0, le=3600)
    body_timeout: float = Field(30.0, gt=0, le=3600)

    # -- validators ---------------------------------------------------------

    @field_validator("sections", mode="before")
    @classmethod
    def _split_sections(cls, value: object) -> object:
        if isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        if isinstance(value, list) and not value:
            raise ValueError("needs at least one section name (comma-separated)")
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            value = [h.strip().lower().strip("[]") for h in value.split(",") if h.strip()]
        if isinstance(value, list):
            for host in value:
                if not _HOST.fullmatch(str(host)):
                    raise ValueError(f"{str(host)[:60]!r} is not a host name (no scheme or port)")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_db(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if not (scheme.startswith("sqlite") or scheme.startswith("postgres")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @field_validator("from_")
    @classmethod
    def _check_from(cls, value: str) -> str:
        check_header_safe(value)
        name, addr = parseaddr(value)
        if "@" not in addr:
            raise ValueError("must be an address like 'Newsroom <digest@example.com>'")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL, e.g. https://news.example.com")
        check_header_safe(value)
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as Europe/Moscow") from None
        return value

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise ValueError("must be a five-field crontab expression such as '0 9 * * fri'")
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_secret_strength(value.get_secret_value())
        return value

    @field_validator(
        "list_name", "postal_address", "reply_to", "alert_email", "list_id", "unsubscribe_mailto"
    )
    @classmethod
    def _no_crlf(cls, value: str | None) -> str | None:
        if value is not None:
            check_header_safe(value)
        return value

    @field_validator("bounce_address")
    @classmethod
    def _check_bounce(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9._\-]+@[A-Za-z0-9.\-]+", value):
            raise ValueError("must be a plain ASCII address like bounces@news.example.com")
        return value

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _check_mailto(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^\s<>@,;]+@[^\s<>@,;?]+", value):
            raise ValueError("must be a plain address like unsubscribe@news.example.com")
        return value

    # -- derived values -----------------------------------------------------

    @property
    def from_address(self) -> Address:
        return _parse_from(self.from_)

    @property
    def sender_domain(self) -> str:
        return self.from_address.domain

    @property
    def envelope_from(self) -> str:
        """The envelope sender without a reference (test sends, confirmations, alerts)."""
        return self.bounce_address or self.from_address.addr_spec

    @property
    def allowed_host_names(self) -> frozenset[str]:
        """Host header values (names, without port) the web app answers to."""
        base = (urlsplit(self.base_url).hostname or "").lower()
        return frozenset([base, *self.allowed_hosts])

    @property
    def effective_list_id(self) -> str:
        if self.list_id:
            return self.list_id
        host = urlsplit(self.base_url).hostname or self.sender_domain
        return f"digest.{host}"

    @property
    def effective_unsubscribe_mailto(self) -> str:
        return self.unsubscribe_mailto or f"unsubscribe@{self.sender_domain}"

    @property
    def effective_privacy_url(self) -> str:
        return self.privacy_url or f"{self.base_url}/privacy"

    @property
    def effective_support_url(self) -> str:
        return self.support_url or f"{self.base_url}/support"

    @property
    def effective_smtp_port(self) -> int:
        if self.smtp_port:
            return self.smtp_port
        return {"none": 25, "starttls": 587, "tls": 465}[self.smtp_security]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def uses_smtp(self) -> bool:
        return bool(self.smtp_host)

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgres")

    @property
    def effective_heartbeat(self) -> float:
        """Renew leases often enough that one late beat never loses them."""
        return min(self.heartbeat_seconds, self.lease_seconds / 3)

    def secret(self) -> bytes:
        """The signing key; a missing key is an error outside the demo."""
        if self.secret_key is None:
            raise SettingsError(
                "DIGEST_SECRET_KEY: not set; set it to a random string of at least "
                f"{MIN_SECRET_LENGTH} characters (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`)"
            )
        return self.secret_key.get_secret_value().encode()


@lru_cache(maxsize=64)
def _parse_from(value: str) -> Address:
    name, addr = parseaddr(value)
    user, _, domain = addr.rpartition("@")
    return Address(display_name=name, username=user, domain=domain)


def check_secret_strength(value: str) -> str:
    """Refuse keys that are short or obviously not random (a heuristic against mistakes
    such as `aaaa...`, spaces, `0123...` or a word repeated; it cannot prove randomness).

    The estimate is the Shannon entropy of the characters and of the steps between
    neighbours (whichever is lower) times the length: 32 random hex digits score
    about 100 bits, 32 characters of token_urlsafe about 190; the floor is 80.
    """
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
    steps = [ord(b) - ord(a) for a, b in zip(value, value[1:])]
    grams = [value[i : i + 3] for i in range(len(value) - 2)]
    if min(_entropy_bits(value), _entropy_bits(steps)) < 80 or len(set(grams)) < 0.75 * len(grams):
        raise ValueError(
            "looks guessable (repeated or sequential characters); use a random value, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    return value


def _entropy_bits(items: Sequence[object]) -> float:
    n = len(items)
    return -sum(k / n * math.log2(k / n) for k in Counter(items).values()) * n if n else 0.0


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning pydantic's report into one SettingsError line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
        name = loc[0] if loc else "?"
        env = "DIGEST_FROM" if name in ("from_", "DIGEST_FROM") else f"DIGEST_{name.upper()}"
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        raise SettingsError(f"{env}: {msg}") from None
