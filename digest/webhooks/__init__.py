"""Signed webhooks: other systems (a CRM, the donations system) hear about subscribers and
editions as they change.

- `models`: endpoints, events, one delivery per endpoint and event, and its attempts.
- `outbox.emit`: writes an event and its deliveries in the SAME transaction as the change
  (the outbox pattern), called where statuses change (subscribers.subscriptions,
  subscribers.store, the ledger's end of a send). Nothing is written when no endpoint
  listens for the event type.
- `dispatcher`: POSTs due deliveries, signed, with retries and backoff, in order per
  subscriber, from whichever long-running process holds the `webhooks` lease.
- `endpoints`: adding, listing and removing endpoints (URL and SSRF checks), the log.
"""
