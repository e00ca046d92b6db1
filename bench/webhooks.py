"""Webhook delivery: the dispatcher's events per second against bare signed POSTs.

    .venv/bin/python -m bench.webhooks [--events 500] [--json FILE]

One receiver for all runs (the tests' threaded http.server on loopback, checking every
signature). The baseline is the floor any dispatcher pays: the same number of signed
POSTs from one httpx client, DIGEST_WEBHOOK_CONCURRENCY at a time, with no database.
Then the real thing on a fresh SQLite store: events written to the outbox (one per
subscriber, so up to 8 go at once), delivered by `Dispatcher`, each attempt recorded;
and the same number of events about ONE subscriber, which go strictly one after another.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from bench.common import Results, bench_settings
from digest.settings import Settings
from digest.store.engine import dispose_all, get_engine, session_scope
from digest.webhooks import endpoints, signing
from digest.webhooks.dispatcher import Dispatcher
from digest.webhooks.outbox import emit_many
from subscribers import store
from tests.hookreceiver import Receiver
from tests.sending import add_subscribers


async def baseline(receiver: Receiver, n: int, concurrency: int) -> float:
    import httpx

    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=10) as client:

        async def one(i: int) -> None:
            body = json.dumps({"id": f"evt_{i}", "type": "t", "data": {"i": i}}).encode()
            headers = {signing.HEADER: signing.header(receiver.secret, body)}
            async with gate:
                r = await client.post(receiver.url, content=body, headers=headers)
                r.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - started


def outbox(settings: Settings, receiver: Receiver, n: int, one_subscriber: bool) -> float:
    engine = get_engine(settings.database_url)
    emails = add_subscribers(engine, n, start=n if one_subscriber else 0, settings=settings)
    with session_scope(engine) as s:
        ids = store.ids_for(s, emails)
        row = endpoints.add(s, receiver.url, None, allow_private=True)
        receiver.secret = row.secret
        items = [
            (
                lambda e=e: {"subscriber": {"email": e}},
                ids[emails[0]] if one_subscriber else ids[e],
                None,
            )
            for e in emails
        ]
        emit_many(s, "subscriber.confirmed", items)
    start = len(receiver.accepted())

    async def run() -> float:
        stop = asyncio.Event()
        d = Dispatcher(engine, settings)
        started = time.perf_counter()
        task = asyncio.create_task(d.run(stop))
        while len(receiver.accepted()) - start < n:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        return elapsed

    elapsed = asyncio.run(run())
    with session_scope(engine) as s:
        endpoints.remove(s, str(row.id))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = Results("webhooks: events delivered per second, against bare signed POSTs")
    with tempfile.TemporaryDirectory() as tmp, Receiver() as receiver:
        receiver.secret = signing.new_secret()
        settings = bench_settings(
            Path(tmp), DIGEST_WEBHOOK_ALLOW_PRIVATE="true", DIGEST_WEBHOOK_POLL_SECONDS="0.01"
        )
        base = asyncio.run(baseline(receiver, args.events, settings.webhook_concurrency))
        many = outbox(settings, receiver, args.events, one_subscriber=False)
        one = outbox(settings, receiver, args.events, one_subscriber=True)
        assert all(h.verified for h in receiver.hooks[args.events :])
        dispose_all()
    n = args.events
    results.facts["events"] = n
    results.add("bare signed POSTs (baseline)", n / base, "/s", note=f"{base:.2f} s")
    results.add(
        "dispatcher, one event per subscriber",
        n / many,
        "/s",
        note=f"{base / many:.2f}x of the baseline's rate",
    )
    results.add(
        "dispatcher, all about one subscriber",
        n / one,
        "/s",
        note=f"{base / one:.2f}x of the baseline's rate (strictly in order)",
    )
    results.show(str(args.json) if args.json else None)


if __name__ == "__main__":
    main()
