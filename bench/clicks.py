"""What counted story links cost per recipient: per-subscriber links against aggregate
ones (and direct links) in the same run.

    .venv/bin/python -m bench.clicks

The 20-story sample issue is rendered three ways (DIGEST_CLICK_STATS=off, aggregate,
per-subscriber); each is assembled for distinct recipients with MessageTemplate.build,
as the sender does, unsigned and with Ed25519 DKIM. Aggregate links are written once at
render time, so their per-recipient cost must be that of direct links; per-subscriber
links add one reader token per message (one HMAC) spliced into every story link's gap.
Also: making and checking a link, and the HTML size of each rendering. Figures are
medians of repeated CPU timings after a warm-up.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bench.common import Results, bench_settings, workspace
from bench.render import Recipients, per_call, template_for
from digest.editorial import slots
from digest.editorial.render import render_issue
from digest.stats import links
from tests.samples import sample_content

EDITION_ID = 4242


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=20)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    results = Results(f"counted story links: {args.stories}-story issue, per recipient")
    with workspace() as work:
        settings = bench_settings(work)
        content = sample_content(args.stories)
        modes: dict[str, Any] = {}
        for mode in (links.OFF, links.AGGREGATE, links.PER_SUBSCRIBER):
            rendered = render_issue(
                {**content, "click_stats": mode},
                settings,
                story_link=links.story_links(settings, EDITION_ID, mode),
            )
            template = template_for(rendered, settings, issue_id=EDITION_ID)
            modes[mode] = (rendered, template)
            gaps = rendered.html.count(slots.READER) + rendered.text.count(slots.READER)
            results.facts[f"{mode}: html bytes"] = len(rendered.html)
            results.facts[f"{mode}: reader gaps"] = gaps

        timings = {}
        # Interleaved rounds, so load from other processes hits every mode alike.
        for _round in range(3):
            for mode, (_rendered, template) in modes.items():
                people = Recipients(settings)
                t = per_call(lambda t=template, p=people: t.build(p.next()), calls=args.calls)
                timings.setdefault(mode, []).append(t)
        best = {mode: min(values) for mode, values in timings.items()}
        base = best[links.AGGREGATE]
        for mode in modes:
            results.add(
                f"build, {mode}",
                best[mode] * 1e6,
                "us",
                note=f"{best[mode] / base:.2f}x aggregate",
            )
        dkim(results, modes, settings)

        secret = settings.secret()
        token = links.story_token(secret, EDITION_ID, 7)
        signer = links.ReaderSigner(secret, EDITION_ID)
        reader = signer(123456)[1:]
        results.add(
            "reader token (once per message)",
            per_call(lambda: signer(123456), calls=20000) * 1e6,
            "us",
        )
        results.add(
            "check a per-subscriber link (/r/)",
            per_call(lambda: links.verify(secret, token, reader), calls=20000) * 1e6,
            "us",
        )
    results.show(args.json)
    return 0


def dkim(results: Results, modes: dict[str, Any], settings: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from digest.delivery.dkim import Signer

    signer = Signer("news.example.com", "bench", ed25519.Ed25519PrivateKey.generate())
    signed = {}
    for _round in range(3):
        for mode, (rendered, _template) in modes.items():
            template = template_for(rendered, settings, issue_id=EDITION_ID, signer=signer)
            people = Recipients(settings)
            t = per_call(lambda t=template, p=people: t.build(p.next()), calls=300)
            signed.setdefault(mode, []).append(t)
    base = min(signed[links.AGGREGATE])
    for mode, values in signed.items():
        results.add(
            f"build + DKIM Ed25519, {mode}",
            min(values) * 1e6,
            "us",
            note=f"{min(values) / base:.2f}x aggregate",
        )


if __name__ == "__main__":
    sys.exit(main())
