"""Send rate: the real pipeline against Postfix's smtp-source, into the same smtp-sink.

    .venv/bin/python -m bench.send --messages 20000 --concurrency 10 --rounds 3

Each round: N confirmed subscribers in a fresh SQLite store, the 20-story sample
issue frozen and its ledger filled by `campaign.prepare_send`, then the real Sender
(ledger -> personalised messages -> SMTP pool of C connections) sends all N into
one smtp-sink on loopback. smtp-source sends N copies of the same message with C
sessions (connections kept, -d) before the first round and after every round; a
round's ratio is digest's rate over the mean of the smtp-source runs around it,
so machine noise hits both sides alike. The figure is the median round.
After the last round, the SMTP pool alone sends N ready messages (no ledger,
no assembly: what the transport costs), the obvious script (EmailMessage +
smtplib, one connection) sends --naive messages, and the Sender sends N into a
transport that accepts at once (what the ledger and assembly cost). Exit status 1 unless every message arrived and every ledger
shows all N sent; timing never decides the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import smtplib
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from sqlalchemy import select

from bench.common import (
    ENVELOPE_FROM,
    FROM,
    Results,
    SMTPSink,
    bench_settings,
    dkim_env,
    require_postfix_tools,
    seed_subscribers,
    smtp_env,
    smtp_source,
    start_issue,
    stopwatch,
    workspace,
)
from digest.clock import utcnow
from digest.delivery import campaign
from digest.delivery.sender import Sender
from digest.delivery.transports.base import Outbound, Outcome, Result, SMTPReady, Transport
from digest.delivery.transports.smtp import SMTPTransport
from digest.editorial import slots
from digest.editorial.models import Edition
from digest.settings import Settings
from digest.store.engine import get_engine, session_scope
from subscribers.model import Subscriber
from subscribers.tokens import make_token

TARGET_RATIO = 0.8


@dataclass
class Run:
    """One timed send: messages, seconds, client and sink CPU seconds."""

    messages: int
    seconds: float
    cpu: float
    sink_cpu: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def cpu_us(self) -> tuple[float, float]:
        return self.cpu / self.messages * 1e6, self.sink_cpu / self.messages * 1e6


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_source(sink: SMTPSink, message: Path, n: int, conc: int) -> Run:
    cpu, sink_cpu, base = children_cpu(), sink.cpu_seconds(), sink.received
    seconds = smtp_source(sink.port, message, n, conc)
    arrived = sink.wait_for(base + n) - base
    if arrived != n:
        raise SystemExit(f"bench.send: smtp-sink received {arrived} of smtp-source's {n}")
    return Run(n, seconds, children_cpu() - cpu, sink.cpu_seconds() - sink_cpu)


async def send_issue(settings: Settings, issue: Edition, concurrency: int) -> tuple[int, dict]:
    """The real Sender over the SMTP pool; (sent in this run, ledger totals)."""
    engine = get_engine(settings.database_url)
    transport = SMTPTransport.from_settings(settings, concurrency=concurrency)
    async with transport:
        report = await Sender(engine, settings, issue, transport).run()
    return report.run["sent"], report.totals


def run_digest(sink: SMTPSink, settings: Settings, issue: Edition, n: int, conc: int) -> Run:
    cpu, sink_cpu, base = time.process_time(), sink.cpu_seconds(), sink.received
    with stopwatch() as t:
        sent, totals = asyncio.run(send_issue(settings, issue, conc))
    run = Run(sent, t[0], time.process_time() - cpu, sink.cpu_seconds() - sink_cpu)
    arrived = sink.wait_for(base + n) - base
    problems = []
    if sent != n or totals.get("sent") != n:
        problems.append(f"ledger: {sent} sent in this run, totals {totals}; expected {n}")
    if arrived != n:
        problems.append(f"smtp-sink received {arrived} of digest's {n} messages")
    if problems:
        raise SystemExit("bench.send: " + "; ".join(problems))
    return run


def transport_only(sink: SMTPSink, message: bytes, n: int, conc: int, pipelining: bool) -> Run:
    """The SMTP pool alone: `n` ready messages from `conc` tasks, no ledger, no assembly."""

    async def go() -> int:
        transport = SMTPTransport(
            "127.0.0.1",
            sink.port,
            security="none",
            pool_size=conc,
            local_hostname="bench.local",
            pipelining=pipelining,
        )
        queue = [Outbound(ENVELOPE_FROM, f"reader{i}@example.com", message) for i in range(n)]
        sent = 0

        async def worker() -> None:
            nonlocal sent
            while queue:
                result = await transport.send(queue.pop())
                sent += result.outcome is Outcome.SENT

        async with transport:
            await asyncio.gather(*(worker() for _ in range(conc)))
        return sent

    cpu, sink_cpu, base = time.process_time(), sink.cpu_seconds(), sink.received
    with stopwatch() as t:
        sent = asyncio.run(go())
    run = Run(sent, t[0], time.process_time() - cpu, sink.cpu_seconds() - sink_cpu)
    arrived = sink.wait_for(base + n) - base
    if sent != n or arrived != n:
        raise SystemExit(f"bench.send: transport alone: {sent} sent, {arrived} arrived of {n}")
    return run


class InstantTransport(Transport):
    """Accepts every message at once: what the Sender, ledger and assembly cost alone."""

    name = "instant"

    async def send(self, message: Outbound) -> Result:
        return Result.sent()


def without_smtp(n: int, extra: dict[str, str]) -> Run:
    """The Sender on a fresh store of `n`, into InstantTransport."""
    with workspace() as work:
        settings = bench_settings(work, **extra)
        seed_subscribers(settings, n)
        issue = start_issue(settings)
        engine = get_engine(settings.database_url)

        async def go() -> int:
            async with InstantTransport() as transport:
                report = await Sender(engine, settings, issue, transport).run()
            return report.run["sent"]

        cpu = time.process_time()
        with stopwatch() as t:
            sent = asyncio.run(go())
        if sent != n:
            raise SystemExit(f"bench.send: without SMTP: {sent} of {n} sent")
        return Run(sent, t[0], time.process_time() - cpu, 0.0)


def naive_send(settings: Settings, issue: Edition, sink: SMTPSink, limit: int) -> Run:
    """The obvious script: an EmailMessage per subscriber, smtplib, one connection."""
    with session_scope(get_engine(settings.database_url)) as session:
        rows = session.execute(
            select(Subscriber.id, Subscriber.email, Subscriber.name)
            .order_by(Subscriber.id)
            .limit(limit)
        ).all()
    secret, list_id = settings.secret(), settings.effective_list_id
    subject = issue.content.get("subject") or issue.subject
    cpu, sink_cpu, base = time.process_time(), sink.cpu_seconds(), sink.received
    with stopwatch() as t, smtplib.SMTP("127.0.0.1", sink.port) as smtp:
        for sid, email, name in rows:
            token = make_token(secret, "unsubscribe", sid, list_id)
            url = f"{settings.base_url}/unsubscribe/{token}"
            hello = f"Hello {name.split()[0]}," if name else "Hello,"
            msg = EmailMessage()
            msg["From"] = FROM
            msg["To"] = f"{name} <{email}>"
            msg["Subject"] = subject
            msg["Date"] = format_datetime(utcnow())
            msg["Message-ID"] = make_msgid(domain="news.example.com")
            msg["List-Unsubscribe"] = f"<{url}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            msg.set_content(personal(issue.text, hello, url))
            msg.add_alternative(personal(issue.html, hello, url), subtype="html")
            smtp.send_message(msg, ENVELOPE_FROM, [email])
    arrived = sink.wait_for(base + len(rows)) - base
    if arrived != len(rows):
        raise SystemExit(f"bench.send: smtp-sink received {arrived} of {len(rows)} naive messages")
    return Run(len(rows), t[0], time.process_time() - cpu, sink.cpu_seconds() - sink_cpu)


def personal(body: str, greeting: str, url: str) -> str:
    return body.replace(slots.GREETING, greeting).replace(slots.UNSUBSCRIBE_URL, url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", "-n", type=int, default=20_000)
    parser.add_argument("--concurrency", "-c", type=int, default=10)
    parser.add_argument("--rounds", "-r", type=int, default=3)
    parser.add_argument("--naive", type=int, default=500, help="messages for the naive baseline")
    parser.add_argument("--no-pipelining", action="store_true", help="DIGEST_SMTP_PIPELINING=false")
    parser.add_argument(
        "--dkim",
        choices=["rsa", "ed25519"],
        help="sign every message (RSA-2048 or Ed25519); smtp-source sends the signed sample",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if min(args.messages, args.concurrency, args.rounds) < 1 or args.naive < 0:
        parser.error("--messages, --concurrency and --rounds must be at least 1")
    require_postfix_tools()
    n, conc = args.messages, args.concurrency
    extra = {"DIGEST_SMTP_PIPELINING": "false"} if args.no_pipelining else {}
    keys = Path(tempfile.mkdtemp(prefix="digest-bench-keys-"))
    if args.dkim:
        extra.update(dkim_env(keys, args.dkim))

    results = Results(f"send rate: {n:,} messages per run, concurrency {conc}")
    sources: list[Run] = []
    digests: list[Run] = []
    naive: Run | None = None
    alone: Run | None = None
    with SMTPSink() as sink:
        message = Path(f"/tmp/digest-bench-message-{sink.port}.eml")
        try:
            for r in range(args.rounds):
                with workspace() as work:
                    settings = bench_settings(work, **smtp_env(sink.port, conc), **extra)
                    with stopwatch() as t_setup:
                        seed_subscribers(settings, n)
                        issue = start_issue(settings)
                    if r == 0:
                        sample = campaign.message_for(
                            settings, issue, "reader@example.com", "Sample Reader", 1
                        )
                        message.write_bytes(sample.replace(b"\r\n", b"\n"))  # see smtp_source
                        results.facts["message_bytes"] = len(sample)
                        results.facts["setup_seconds"] = round(t_setup[0], 1)
                        sources.append(run_source(sink, message, n, conc))
                    digests.append(run_digest(sink, settings, issue, n, conc))
                    sources.append(run_source(sink, message, n, conc))
                    print(
                        f"round {r + 1}: smtp-source {sources[-2].rate:,.0f} / "
                        f"{sources[-1].rate:,.0f} msg/s, digest {digests[-1].rate:,.0f} msg/s",
                        flush=True,
                    )
                    if r == args.rounds - 1:
                        alone = transport_only(
                            sink, SMTPReady(sample), n, conc, not args.no_pipelining
                        )
                        if args.naive:
                            naive = naive_send(settings, issue, sink, min(args.naive, n))
        finally:
            message.unlink(missing_ok=True)

    ratios = [d.rate / ((a.rate + b.rate) / 2) for d, a, b in zip(digests, sources, sources[1:])]
    ratio = statistics.median(ratios)
    reference = statistics.median(s.rate for s in sources)
    ours = statistics.median(d.rate for d in digests)
    d_cpu, d_sink = (statistics.median(x) for x in zip(*(d.cpu_us() for d in digests)))
    s_cpu, s_sink = (statistics.median(x) for x in zip(*(s.cpu_us() for s in sources)))
    results.facts.update(
        dkim=args.dkim or "off",
        pipelining=not args.no_pipelining,
        rounds=args.rounds,
        round_ratios=", ".join(f"{x:.2f}" for x in ratios),
        cpu_per_message=(
            f"digest {d_cpu:.0f} us (sink {d_sink:.0f} us); "
            f"smtp-source {s_cpu:.0f} us (sink {s_sink:.0f} us)"
        ),
    )
    results.add("smtp-source", reference, "msg/s", note="median run; the reference")
    instant = without_smtp(n, extra)
    shutil.rmtree(keys, ignore_errors=True)
    results.facts["without_smtp"] = (
        f"{instant.rate:,.0f} msg/s, {instant.cpu_us()[0]:.0f} us CPU per message: the Sender "
        "(ledger, assembly) into a transport that accepts at once"
    )
    if alone is not None:
        a_cpu, a_sink = alone.cpu_us()
        results.facts["transport_alone"] = (
            f"{alone.rate:,.0f} msg/s, {a_cpu:.0f} us CPU per message (sink {a_sink:.0f} us): "
            "the SMTP pool sending ready messages, no ledger or assembly"
        )
    results.add(
        "digest (Sender + SMTP pool)",
        ours,
        "msg/s",
        target=f">= {TARGET_RATIO}x",
        met=ratio >= TARGET_RATIO,
        note=f"{ratio:.2f}x smtp-source (median round)",
    )
    if naive is not None:
        results.add(
            "naive (EmailMessage + smtplib)",
            naive.rate,
            "msg/s",
            note=(
                f"{naive.rate / reference:.2f}x smtp-source; digest is "
                f"{ours / naive.rate:.0f}x faster; {naive.cpu_us()[0]:,.0f} us CPU per message"
            ),
        )
    results.show(args.json)
    print(f"all {n * args.rounds:,} digest messages arrived; ledgers complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
