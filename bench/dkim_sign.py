"""Per-message cost of DKIM signing, on the 20-story sample issue.

    .venv/bin/python -m bench.dkim_sign --messages 2000

Measures MessageTemplate.build() per recipient without a signer, with our RSA-2048 and
Ed25519 signers (digest.dkim), and, for comparison, dkimpy's own sign() on the same
bytes (pure-Python RSA). Prints microseconds per message and the implied messages per
second on one core.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import dkim as dkimpy

from digest.delivery import dkimkeys
from digest.delivery.dkim import SIGNED_HEADERS, Signer
from digest.delivery.message import MessageTemplate, Recipient
from digest.editorial.render import render_issue
from digest.settings import Settings
from tests.samples import sample_content

DOMAIN = "news.example.com"


def per_message(template: MessageTemplate, n: int) -> tuple[float, int]:
    size = 0
    start = time.perf_counter()
    for i in range(n):
        size = len(
            template.build(Recipient(i + 1, f"reader{i}@example.com", f"Reader {i}", f"t{i}"))
        )
    return (time.perf_counter() - start) / n * 1e6, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    settings = Settings(
        secret_key="k8Vq2pZ4xR7mN1wT5yB3cF9hJ6dL0sGa",
        base_url=f"https://{DOMAIN}",
        DIGEST_FROM=f"News <digest@{DOMAIN}>",
    )
    rendered = render_issue(sample_content(20), settings)
    rows = []
    for name, key in (
        ("unsigned", None),
        ("rsa-sha256 (2048)", dkimkeys.generate_key("rsa")),
        ("ed25519-sha256", dkimkeys.generate_key("ed25519")),
    ):
        signer = Signer(DOMAIN, "bench", key) if key is not None else None
        template = MessageTemplate(
            rendered,
            settings=settings,
            issue_key="2026-W48",
            subject="The Weekly Digest: a benchmark",
            date=datetime.now(UTC),
            signer=signer,
        )
        template.build(Recipient(0, "warm@example.com", "Warm", "t"))  # first message fills caches
        us, size = per_message(template, args.messages)
        rows.append((name, us, size))
    # dkimpy for comparison (slow: fewer messages).
    template = MessageTemplate(
        rendered, settings=settings, issue_key="2026-W48", subject="x" * 20, date=datetime.now(UTC)
    )
    pem = dkimkeys.private_pem(dkimkeys.generate_key("rsa"))
    headers = [h.lower().encode() for h in SIGNED_HEADERS]
    n = max(20, args.messages // 50)
    start = time.perf_counter()
    for i in range(n):
        data = template.build(Recipient(i + 1, f"r{i}@example.com", "R", f"t{i}"))
        dkimpy.sign(data, b"bench", DOMAIN.encode(), pem, include_headers=headers)
    rows.append(("dkimpy.sign rsa-sha256", (time.perf_counter() - start) / n * 1e6, len(data)))
    print(f"{'signer':<24}{'us/message':>12}{'msgs/s/core':>14}{'bytes':>9}")
    for name, us, size in rows:
        print(f"{name:<24}{us:>12.0f}{1e6 / us:>14.0f}{size:>9}")


if __name__ == "__main__":
    main()
