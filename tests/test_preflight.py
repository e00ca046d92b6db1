"""Preflight: a clean issue passes; an issue made to have each problem is caught."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from digest.delivery import dkimkeys, preflight
from digest.editorial.darkmode import parse_colour, scan
from digest.editorial.render import RenderedIssue, render_issue
from digest.resources import builtin_templates
from digest.settings import Settings, load_settings
from tests.clirun import run_cli
from tests.samples import sample_content

KEY = "2026-W48"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
needs_spamassassin = pytest.mark.skipif(
    shutil.which("spamassassin") is None, reason="SpamAssassin is not installed"
)


@pytest.fixture(scope="module")
def clean() -> tuple[dict[str, Any], RenderedIssue]:
    content = sample_content(20)
    s = Settings(secret_key="k8Vq2pZ4xR7mN1wT5yB3cF9hJ6dL0sGa", base_url="https://news.example.com")
    return content, render_issue(content, s)


@dataclass
class FakeIssue:
    """What check_issue reads from an Issue row."""

    html: str
    text: str
    content: dict[str, Any]
    key: str = KEY
    id: int = 1
    subject: str = ""
    preheader: str = ""
    status: str = "frozen"
    extra: dict[str, Any] = field(default_factory=dict)


def run_check(settings: Settings, rendered: RenderedIssue, content: dict[str, Any], **over: str):
    args = {
        "html": rendered.html,
        "text": rendered.text,
        "subject": content["subject"],
        "preheader": content["preheader"],
        "key": KEY,
        "settings": settings,
    }
    args.update(over)
    return preflight.check(**args)


def test_the_clean_sample_issue_has_no_findings(settings, clean) -> None:
    content, rendered = clean
    report = run_check(settings, rendered, content)
    assert report.findings == [] and report.ok
    assert report.lines() == [
        f"preflight: 0 error(s), 0 warning(s); HTML {report.html_bytes / 1024:.1f} KB "
        "of Gmail's 102 KB"
    ]


def _body_tag(html: str) -> re.Match[str]:
    return re.search(r"<body[^>]*>", html)


def _without_body_background(html: str, insert: str) -> str:
    """The HTML with an unstyled <body> and `insert` placed directly inside it."""
    tag = _body_tag(html)
    return html[: tag.start()] + "<body>" + insert + html[tag.end() :]


def _replace(old: str, new: str, count: int = 1) -> Callable[[str], str]:
    def edit(html: str) -> str:
        assert old in html, old
        return html.replace(old, new, count)

    return edit


# (problem, what to change, level, code): each one on its own, on the clean issue.
HTML_PROBLEMS: list[tuple[str, Callable[[str], str], str, str]] = [
    ("over 102 KB", lambda h: h.replace("</body>", "<!--" + "x" * 60_000 + "--></body>"), "error", "size"),
    ("over 90 KB", lambda h: h.replace("</body>", "<!--" + "x" * 45_000 + "--></body>"), "warning", "size"),
    ("no unsubscribe link", lambda h: h.replace("__DIGEST_UNSUBSCRIBE_URL__", "#"), "error", "unsubscribe"),
    ("image without alt", lambda h: re.sub(r'alt="[^"]*"', 'alt=""', h), "warning", "alt-text"),
    ("image without size", lambda h: re.sub(r'(<img[^>]*?) height="338"', r"\1", h), "warning", "image-size"),
    ("relative link", lambda h: h.replace("</body>", '<a href="/about">About us</a></body>'), "warning", "relative-url"),
    ("plain http link", lambda h: h.replace("https://www.themoscowtimes.com/2026/11/20/story-1-a0", "http://www.themoscowtimes.com/a"), "warning", "insecure-url"),
    ("localhost link", lambda h: h.replace("</body>", '<a href="https://localhost:8000/x">Local</a></body>'), "warning", "local-url"),
    ("broken link", lambda h: h.replace("</body>", '<a href="https://intranet/x">Intranet</a></body>'), "warning", "broken-url"),
    ("same URL, other text", lambda h: h.replace("</body>", '<a href="https://news.example.com/privacy">Data policy</a></body>'), "warning", "link-text"),
    ("no view in browser", lambda h: h.replace('href="https://news.example.com/issues/2026-W48"', 'href="https://news.example.com/"'), "warning", "view-in-browser"),
    ("placeholder in alt text", lambda h: re.sub(r'alt="[^"]+"', 'alt="Lorem ipsum dolor"', h, count=1), "warning", "placeholder"),
    ("dark text on no background", lambda h: _without_body_background(h, '<p style="color:#333333">Read this first</p>'), "warning", "dark-mode"),
    ("no color-scheme", lambda h: re.sub(r"color-scheme", "x-scheme", h), "warning", "color-scheme"),
    ("dark claimed, no dark styles", lambda h: h.replace("prefers-color-scheme: dark", "min-width: 9999px"), "warning", "color-scheme"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("problem", "edit", "level", "code"), HTML_PROBLEMS, ids=[p[0] for p in HTML_PROBLEMS]
)
def test_each_html_problem_is_caught(settings, clean, problem, edit, level, code) -> None:
    content, rendered = clean
    html = edit(rendered.html)
    assert html != rendered.html
    report = run_check(settings, rendered, content, html=html)
    found = {(f.level, f.code) for f in report.findings}
    assert (level, code) in found, report.lines()
    assert report.ok == (level != "error")
    assert all(line.startswith("  ") and "\n" not in line for line in report.lines()[1:])


TEXT_PROBLEMS = [
    ("no text part", {"text": "  \n"}, "error", "text-part"),
    ("subject too short", {"subject": "News"}, "warning", "subject"),
    ("subject too long", {"subject": "The Weekly Digest: " + "a very long subject " * 4}, "warning", "subject"),
    ("placeholder in subject", {"subject": "The Weekly Digest: {{ headline }}"}, "warning", "placeholder"),
    ("TK in the text", {"text": "Hello,\n\nStory TK by Friday.\n__DIGEST_UNSUBSCRIBE_URL__\n"}, "warning", "placeholder"),
    ("text not wrapped", {"text": "Hello,\n\n" + "word " * 30 + "\n__DIGEST_UNSUBSCRIBE_URL__\n"}, "warning", "text-width"),
    ("lorem in preheader", {"preheader": "Lorem ipsum dolor sit amet"}, "warning", "placeholder"),
    ("preheader repeats subject", {"preheader": " the weekly digest: lavrov's guests, a record rate and siberia's last school"}, "warning", "preheader"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("problem", "over", "level", "code"), TEXT_PROBLEMS, ids=[p[0] for p in TEXT_PROBLEMS]
)
def test_each_text_problem_is_caught(settings, clean, problem, over, level, code) -> None:
    content, rendered = clean
    report = run_check(settings, rendered, content, **over)
    assert (level, code) in {(f.level, f.code) for f in report.findings}, report.lines()
    assert report.ok == (level != "error")


def test_dark_mode_scan_follows_backgrounds() -> None:
    html = (
        '<html><head><meta name="color-scheme" content="light"></head><body>'
        '<div style="color:#1a1a1a">gone in dark mode</div>'
        '<table bgcolor="#ffffff"><tr><td style="color:#111">on white: fine</td></tr></table>'
        '<div style="background:#fff url(x.png) no-repeat"><p style="color:black">fine</p></div>'
        '<div style="background-color:transparent"><span style="color:rgb(20,20,20)">gone</span></div>'
        '<p style="color:#eeeeee">light text: fine</p>'
        '<div style="display:none;color:#000">hidden preheader</div>'
        "</body></html>"
    )
    report = scan(html)
    assert [(v.colour, v.sample) for v in report.vanishing] == [
        ("#1a1a1a", "gone in dark mode"),
        ("rgb(20,20,20)", "gone"),
    ]
    assert report.scheme == "light" and not report.dark_styles
    assert parse_colour("#abc") == parse_colour("#aabbcc")
    assert parse_colour("rgba(0, 0, 0, 0)")[3] == 0
    assert parse_colour("hsl(0, 0%, 0%)") is None


def fake_issue(content: dict[str, Any], rendered: RenderedIssue, **over: str) -> FakeIssue:
    return FakeIssue(
        html=over.get("html", rendered.html),
        text=over.get("text", rendered.text),
        content={**content, **{k: v for k, v in over.items() if k in ("subject", "preheader")}},
    )


def codes(report: preflight.Report) -> dict[str, str]:
    return {f.code: f.level for f in report.findings}


def test_dkim_set_up_is_checked(workdir, clean, monkeypatch) -> None:
    content, rendered = clean
    issue = fake_issue(content, rendered)
    monkeypatch.setenv("DIGEST_SPAMASSASSIN", "off")
    report = preflight.check_issue(issue, load_settings())
    assert codes(report)["dkim"] == "warning" and report.ok  # signing off: a warning

    key_file = workdir / "dkim.pem"
    dkimkeys.write_private_key(key_file, dkimkeys.generate_key("ed25519"))
    monkeypatch.setenv("DIGEST_DKIM_KEY_FILE", str(key_file))
    report = preflight.check_issue(issue, load_settings())
    assert codes(report)["dkim"] == "error" and not report.ok  # no selector: nothing signs
    assert "DIGEST_DKIM_SELECTOR: required" in report.lines()[1]

    monkeypatch.setenv("DIGEST_DKIM_SELECTOR", "s1")
    report = preflight.check_issue(issue, load_settings())
    assert not {"dkim", "dkim-key", "dkim-alignment"} & set(codes(report)) and report.ok

    monkeypatch.setenv("DIGEST_DKIM_DOMAIN", "other.example.net")
    key_file.chmod(0o644)
    report = preflight.check_issue(issue, load_settings())
    assert codes(report)["dkim-alignment"] == "warning"
    assert any("chmod 600" in f.message for f in report.findings if f.code == "file-mode")


def test_spam_check_skipped_with_a_note(workdir, clean, monkeypatch) -> None:
    content, rendered = clean
    issue = fake_issue(content, rendered)
    monkeypatch.setenv("DIGEST_SPAMASSASSIN", str(workdir / "no-such-spamassassin"))
    report = preflight.check_issue(issue, load_settings())
    spam = [f for f in report.findings if f.code == "spam"]
    assert len(spam) == 1 and spam[0].level == "info" and "is not installed" in spam[0].message
    monkeypatch.setenv("DIGEST_SPAMASSASSIN", "off")
    report = preflight.check_issue(issue, load_settings())
    assert "DIGEST_SPAMASSASSIN=off" in [f for f in report.findings if f.code == "spam"][0].message


@needs_spamassassin
def test_offline_spam_score_reports_rules(workdir, clean, monkeypatch) -> None:
    content, rendered = clean
    monkeypatch.setenv("DIGEST_SPAMASSASSIN", "spamassassin")
    settings = load_settings()
    report = preflight.check_issue(fake_issue(content, rendered), settings)
    assert report.spam is not None and not report.spam.is_spam
    (line,) = [f for f in report.findings if f.code == "spam"]
    assert line.level == "info" and line.message.startswith("SpamAssassin (local tests) scores ")
    for rule in report.spam.scoring_rules():
        assert rule.name in line.message

    # GTUBE is SpamAssassin's own test pattern: it must score as spam (a warning, not an error).
    spammy = fake_issue(content, rendered, text=GTUBE + "\n\n" + rendered.text)
    report = preflight.check_issue(spammy, settings)
    assert report.spam is not None and report.spam.is_spam
    (line,) = [f for f in report.findings if f.code == "spam"]
    assert line.level == "warning" and "would be marked as spam" in line.message
    assert "GTUBE" in line.message


def test_build_prints_the_report_and_errors_block(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`digest build` with a template that lost its unsubscribe link: errors, exit 3."""
    templates = workdir / "templates"
    shutil.copytree(builtin_templates(), templates)
    digest = templates / "digest.mjml.j2"
    digest.write_text(
        digest.read_text().replace("{{ slots.UNSUBSCRIBE_URL }}", "{{ site.privacy_url }}")
    )
    monkeypatch.setenv("DIGEST_TEMPLATES_DIR", str(templates))
    url = "http://www.themoscowtimes.com/2026/11/20/a"
    assert run_cli(capsys, "picks", "add", url, "--title", "A story worth reading").code == 0
    built = run_cli(capsys, "build", "--out", "out")
    assert built.code == 3, built.err
    out = built.out
    assert re.search(r"preflight: 1 error\(s\), \d+ warning\(s\)", out)
    assert "error: no unsubscribe link in the HTML or the text part" in out
    assert "warning: link URL is not https: http://www.themoscowtimes.com" in out
    assert "info: no offline spam score: DIGEST_SPAMASSASSIN=off" in out
