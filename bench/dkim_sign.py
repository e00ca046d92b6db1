"""Per-message cost of DKIM signing, on the 20-story sample issue; and whether RSA
signing runs in parallel on threads.

    .venv/bin/python -m bench.dkim_sign --messages 2000

Measures MessageTemplate.build() per recipient without a signer, with our RSA-2048 and
Ed25519 signers (digest.dkim), and, for comparison, dkimpy's own sign() on the same
bytes (pure-Python RSA). Prints microseconds per message and the implied messages per
second on one core.

Then the GIL: a pure-Python counter runs in a second thread while the main thread
repeats one operation, with a 0.1 ms switch interval. An operation that keeps the GIL
starves the counter (it only runs between operations); one that releases it does not.
RSA-4096 signatures (one lasts milliseconds) are measured against two controls:
hashlib on 64 MB (releases the GIL) and bytes.count on 256 MB (keeps it). This is what
decides that a thread per core is enough for parallel signing (digest.delivery.message).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import threading
import time
from collections.abc import Callable
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


def counter_share(op: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(ms per operation, the counter's speed during the operations over its speed alone)."""
    count, stop = 0, False

    def spin() -> None:
        nonlocal count
        while not stop:
            count += 1

    thread = threading.Thread(target=spin)
    thread.start()
    time.sleep(0.3)
    alone = count / 0.3
    start, before = time.perf_counter(), count
    for _ in range(repeat):
        op()
    seconds, during = time.perf_counter() - start, count - before
    stop = True
    thread.join()
    return seconds / repeat * 1000, during / seconds / alone


def gil_check() -> None:
    from cryptography import __version__ as version
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    data, big, huge = b"x" * 1200, b"y" * (64 << 20), b"a" * (256 << 20)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.0001)
    try:
        rows = [
            ("hashlib.sha256, 64 MB (releases)", lambda: hashlib.sha256(big).digest(), 5),
            ("bytes.count, 256 MB (keeps)", lambda: huge.count(b"ab"), 3),
            (
                f"RSA-4096 sign, cryptography {version}",
                lambda: key.sign(data, padding.PKCS1v15(), hashes.SHA256()),
                100,
            ),
        ]
        print(f"\n{'operation':<40}{'ms/op':>8}{'counter runs at':>18}")
        for name, op, repeat in rows:
            ms, share = counter_share(op, repeat)
            print(f"{name:<40}{ms:>8.1f}{share:>17.0%}")
    finally:
        sys.setswitchinterval(previous)


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
    gil_check()


if __name__ == "__main__":
    main()
