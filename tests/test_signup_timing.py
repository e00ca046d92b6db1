"""Sign-up must not tell whether an address is known, by its words or by its timing.

Measured on a real server: sign-ups of new addresses and of confirmed ones, in random
order, each from its own client address (X-Forwarded-For, trusted from 127.0.0.1). The
check compares the two distributions, not single requests: the probability that a
new address's answer is slower than a known one's (0.5 when timing tells nothing; it
was ~1.0 when the new row was written before answering) and the medians.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import pytest

from digest.editorial import newsletters
from digest.store.engine import session_scope
from subscribers import subscriptions
from subscribers.model import SubscriberStatus
from tests.sending import subscribe
from tests.webtools import csrf_of, wait_for

N = 60


def slower_share(a: list[float], b: list[float]) -> float:
    """P(x > y) for x from a, y from b (ties count half): the Mann-Whitney AUC."""
    wins = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    return wins / (len(a) * len(b))


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_sign_up_takes_the_same_time_whatever_the_address(serve_web) -> None:
    srv = serve_web()
    known = [f"reader{i}@example.com" for i in range(N)]
    new = [f"newcomer{i}@example.org" for i in range(N)]
    for email in known:
        subscribe(srv.engine, srv.settings, email)
    order = [(e, "known") for e in known] + [(e, "new") for e in new]
    random.Random(14).shuffle(order)
    times: dict[str, list[float]] = {"known": [], "new": []}
    pages: set[str] = set()
    with srv.client() as c:
        csrf = csrf_of(c.get("/subscribe").text)
        for i, (email, kind) in enumerate(order):
            data = {"csrf": csrf, "email": email, "name": "", "consent": "yes"}
            headers = {"x-forwarded-for": f"198.51.{i // 250}.{i % 250}"}
            started = time.perf_counter()
            r = c.post("/subscribe", data=data, headers=headers)
            times[kind].append(time.perf_counter() - started)
            assert r.status_code == 200, r.text
            pages.add(r.text.replace(email, "ADDRESS"))
            time.sleep(0.03)
    assert len(pages) == 1  # the same words for everyone

    share = slower_share(times["new"], times["known"])
    med_new, med_known = statistics.median(times["new"]), statistics.median(times["known"])
    detail = f"P(new slower)={share:.2f} medians new={med_new * 1e3:.1f} ms known={med_known * 1e3:.1f} ms"
    assert 0.3 <= share <= 0.7, detail
    # Loose on purpose (a loaded 2-core machine); before the fix: 23 ms against 12 ms.
    assert abs(med_new - med_known) <= max(0.005, 0.5 * min(med_new, med_known)), detail

    # The work still happens, after the answers: new addresses are pending and mailed.
    def recorded() -> bool:
        with session_scope(srv.engine) as s:
            nl = newsletters.resolve(s, srv.settings, None)
            return subscriptions.count(s, nl.id).get(SubscriberStatus.PENDING, 0) == N

    wait_for(recorded, what="sign-ups recorded")
    outbox = Path(srv.settings.outbox_dir) / "new"
    wait_for(lambda: len(list(outbox.iterdir())) == N, what="confirmation emails")
    mailed = b"".join(p.read_bytes() for p in outbox.iterdir())
    assert b"newcomer0@example.org" in mailed and b"reader0@example.com" not in mailed
