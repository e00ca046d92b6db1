"""The application's lifespan: the in-process scheduler hook and error pages."""

from __future__ import annotations

import os

from sqlalchemy import select

from digest.store.engine import session_scope
from digest.store.leases import Lease
from tests.webtools import LiveServer, wait_for


def _lease(srv: LiveServer) -> Lease | None:
    with session_scope(srv.engine) as s:
        return s.scalar(select(Lease).where(Lease.name == "scheduler"))


def test_serve_runs_the_scheduler_in_process_only_when_asked(serve_web) -> None:
    plain = serve_web()
    with plain.client() as c:
        assert c.get("/healthz").status_code == 200
    assert _lease(plain) is None
    plain.__exit__(None, None, None)

    srv = serve_web(DIGEST_SERVE_SCHEDULER="true")
    lease = wait_for(lambda: _lease(srv), what="the in-process scheduler to take the lead")
    assert lease.pid == os.getpid()
    with srv.client() as c:  # the web app keeps answering alongside it
        assert c.get("/subscribe").status_code == 200
    srv.__exit__(None, None, None)
    assert _lease(srv) is None  # shut down with the app, lease handed back


def test_unknown_paths_and_methods_get_the_site_error_page(serve_web) -> None:
    srv = serve_web()
    with srv.client() as c:
        missing = c.get("/no/such/page")
        assert missing.status_code == 404 and "We could not find that page." in missing.text
        wrong = c.put("/subscribe")
        assert wrong.status_code == 405 and "allow" in wrong.headers
        for r in (missing, wrong):
            assert r.headers["content-security-policy"].startswith("default-src 'self'")
            assert '<html lang="en">' in r.text
