"""Render once, assemble per recipient: what each costs, against the obvious way.

    .venv/bin/python -m bench.render

- MJML: the 20-story issue's MJML compiled to HTML by mjml-python (MRML), the
  once-per-issue step with a target; the whole render_issue (Jinja, MJML and the
  text part) is shown beside it.
- Assembly: MessageTemplate.build for one recipient, with and without making the
  unsubscribe token; the baseline is the same message as an EmailMessage
  (set_content + add_alternative + as_bytes), the usual way.
- DKIM: the same assembly with digest.dkim signing (Ed25519 and RSA-2048 keys made
  on the spot), when digest.dkim exists.
Figures are medians of repeated CPU timings after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from bench.common import FROM, Results, bench_settings, workspace
from digest.delivery.message import MessageTemplate, Recipient
from digest.editorial import render, slots
from digest.editorial.render import RenderedIssue, render_issue
from digest.settings import Settings
from subscribers.tokens import make_token
from tests.samples import sample_content

MJML_TARGET_MS = 10.0
ASSEMBLY_TARGET_US = 20.0


def per_call(fn: Callable[[], Any], *, calls: int, repeats: int = 7) -> float:
    """Median CPU seconds per call over `repeats` timings of `calls` calls each.

    CPU time of this thread, not wall time: on a shared machine the wall clock
    also counts the time other processes had the core.
    """
    fn()
    times = []
    for _ in range(repeats):
        started = time.thread_time()
        for _ in range(calls):
            fn()
        times.append((time.thread_time() - started) / calls)
    return statistics.median(times)


def template_for(rendered: RenderedIssue, settings: Settings, **kw: Any) -> MessageTemplate:
    return MessageTemplate(
        rendered,
        settings=settings,
        issue_key="2026-W48",
        subject=sample_content(20)["subject"],
        date=datetime(2026, 11, 27, 6, 0, tzinfo=UTC),
        **kw,
    )


class Recipients:
    """Cycles through distinct subscribers, as a send does."""

    def __init__(self, settings: Settings) -> None:
        self.secret, self.list_id = settings.secret(), settings.effective_list_id
        self.i = 0

    def next(self) -> Recipient:
        self.i += 1
        i = self.i
        token = make_token(self.secret, "unsubscribe", i, self.list_id)
        return Recipient(i, f"reader{i}@example.com", f"Reader{i % 997} Example", token)


def email_message(rendered: RenderedIssue, settings: Settings, r: Recipient) -> bytes:
    """The baseline: the same personalised message built with the stdlib."""
    url = f"{settings.base_url}/unsubscribe/{r.token}"
    hello = f"Hello {r.name.split()[0]},"
    msg = EmailMessage()
    msg["From"] = FROM
    msg["To"] = f"{r.name} <{r.email}>"
    msg["Subject"] = sample_content(1)["subject"]
    msg["Date"] = format_datetime(datetime(2026, 11, 27, 6, 0, tzinfo=UTC))
    msg["Message-ID"] = make_msgid(domain="news.example.com")
    msg["List-Unsubscribe"] = f"<{url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(
        rendered.text.replace(slots.GREETING, hello).replace(slots.UNSUBSCRIBE_URL, url)
    )
    html = rendered.html.replace(slots.GREETING, hello).replace(slots.UNSUBSCRIBE_URL, url)
    msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


def dkim_figures(results: Results, rendered: RenderedIssue, settings: Settings) -> None:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

        from digest.delivery.dkim import Signer
    except ImportError:
        results.facts["dkim"] = "digest.dkim not present: not measured"
        return
    base = Recipients(settings)
    plain = template_for(rendered, settings)
    unsigned = per_call(lambda: plain.build(base.next()), calls=2000)
    for label, key in (
        ("Ed25519", ed25519.Ed25519PrivateKey.generate()),
        ("RSA-2048", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ):
        signer = Signer("news.example.com", "bench", key)
        template = template_for(rendered, settings, signer=signer)
        people = Recipients(settings)
        signed = per_call(lambda t=template, p=people: t.build(p.next()), calls=300)
        results.add(
            f"assembly + DKIM {label}",
            signed * 1e6,
            "us",
            note=f"signing adds {(signed - unsigned) * 1e6:,.0f} us per message",
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=20)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    results = Results(f"render and assembly: {args.stories}-story issue")
    with workspace() as work:
        settings = bench_settings(work)
        content = sample_content(args.stories)
        started = time.perf_counter()
        rendered = render_issue(content, settings)
        cold = time.perf_counter() - started
        context = render.issue_context(content, settings)
        mjml_source = render._render_template(settings, "digest.mjml.j2", context)
        mjml = per_call(lambda: render._to_html(mjml_source, "digest.mjml.j2"), calls=20)
        whole = per_call(lambda: render_issue(content, settings), calls=10)

        people = Recipients(settings)
        template = template_for(rendered, settings)
        sample = template.build(people.next())
        build = per_call(lambda: template.build(people.next()), calls=5000)
        # What the sender calls: the message and its VERP envelope sender (signed reference).
        envelope = getattr(template, "envelope", None)
        with_verp = per_call(lambda: envelope(people.next()), calls=5000) if envelope else None
        token = per_call(
            lambda: make_token(people.secret, "unsubscribe", 42, people.list_id), calls=20000
        )
        fixed = Recipient(7, "reader7@example.com", "Reader7 Example", "A" * 22)
        build_only = per_call(lambda: template.build(fixed), calls=5000)
        naive = per_call(lambda: email_message(rendered, settings, people.next()), calls=50)

        results.facts.update(
            html_bytes=len(rendered.html),
            text_bytes=len(rendered.text),
            message_bytes=len(sample),
            first_render_ms=round(cold * 1e3, 1),
        )
        results.add(
            "MJML -> HTML (mjml-python)",
            mjml * 1e3,
            "ms",
            target=f"<= {MJML_TARGET_MS:g} ms",
            met=mjml * 1e3 <= MJML_TARGET_MS,
        )
        results.add("render_issue (Jinja+MJML+text)", whole * 1e3, "ms", note="once per issue")
        results.add(
            "assembly: token + build",
            build * 1e6,
            "us",
            target=f"<= {ASSEMBLY_TARGET_US:g} us",
            met=build * 1e6 <= ASSEMBLY_TARGET_US,
            note=f"token {token * 1e6:.1f} us, build alone {build_only * 1e6:.1f} us",
        )
        if with_verp is not None:
            results.add(
                "assembly: token + envelope",
                with_verp * 1e6,
                "us",
                target=f"<= {ASSEMBLY_TARGET_US:g} us",
                met=with_verp * 1e6 <= ASSEMBLY_TARGET_US,
                note="the sender's call: message + VERP envelope sender",
            )
        results.add(
            "baseline: EmailMessage",
            naive * 1e6,
            "us",
            note=f"digest's assembly is {naive / build:,.0f}x faster",
        )
        dkim_figures(results, rendered, settings)
    results.show(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
