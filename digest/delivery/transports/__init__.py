"""Transports: where finished messages go (SMTP pool or outbox folder)."""

from __future__ import annotations

from digest.delivery.transports.base import Outbound, Outcome, Result, Transport
from digest.delivery.transports.outbox import OutboxTransport
from digest.settings import Settings


def make_transport(settings: Settings, *, concurrency: int | None = None) -> Transport:
    """SMTP when DIGEST_SMTP_HOST is set, otherwise the outbox folder."""
    if settings.uses_smtp:
        from digest.delivery.transports.smtp import SMTPTransport

        return SMTPTransport.from_settings(settings, concurrency=concurrency)
    return OutboxTransport(settings.outbox_dir)


__all__ = ["Outbound", "OutboxTransport", "Outcome", "Result", "Transport", "make_transport"]
