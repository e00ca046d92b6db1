"""A real HTTP server on loopback that receives webhooks, as another system would.

It checks each request's Digest-Signature with the endpoint's secret (the recipe of
docs/webhooks.md), records what arrived, and answers what the test scripts: e.g. 500 to
the first POST, then 200.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from digest.webhooks import signing
from tests.loopback import LoopbackServer, QuietHandler


@dataclass
class Hook:
    """One POST that arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int  # what we answered

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver(LoopbackServer):
    """`with Receiver() as r:` - r.url; r.secret must be set before events arrive."""

    def __init__(self, answer: Callable[[int, dict[str, Any]], int] | None = None) -> None:
        self.secret = ""
        self.hooks: list[Hook] = []
        self.answer = answer or (lambda n, event: 200)
        self.lock = threading.Lock()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                ok = signing.verify(receiver.secret, self.headers.get(signing.HEADER, ""), body)
                with receiver.lock:
                    n = len(receiver.hooks)
                    try:
                        status = receiver.answer(n, json.loads(body))
                    except Exception:
                        status = 400
                    receiver.hooks.append(Hook(self.path, dict(self.headers), body, ok, status))
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        super().__init__(Handler)
        self.url = self.base + "/hooks"

    def accepted(self) -> list[Hook]:
        with self.lock:
            return [h for h in self.hooks if 200 <= h.status < 300]

    def wait(self, n: int, timeout: float = 15.0) -> list[Hook]:
        """Wait until `n` POSTs were accepted."""
        deadline = time.monotonic() + timeout
        while len(self.accepted()) < n:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(self.accepted())} of {n} webhooks arrived: {self.hooks}"
                )
            time.sleep(0.02)
        return self.accepted()
