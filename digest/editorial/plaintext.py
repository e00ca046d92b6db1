"""Helpers for the plain-text part: wrapping at 78 columns and numbered link references.

Mail clients that show the text part (and spam filters that read it) expect short lines,
but a URL or a slot marker split across two lines is broken for good, so wrapping never
breaks a word: a long URL simply gets a line of its own.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator

#: RFC 5322 recommends lines of at most 78 characters.
WIDTH = 78

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
#: Joins two words so that wrapping keeps them on one line; shown as a space.
#: A control character, so it cannot come from pick text (digest.picks strips those).
GLUE = "\x00"


def wrap(text: str, width: int = WIDTH, indent: str = "", first_indent: str | None = None) -> str:
    """Wrap each paragraph (blank-line separated) to `width`; never split a URL or marker.

    `first_indent` prefixes the first line of each paragraph (e.g. "* "), `indent` the rest,
    so a bullet's continuation lines line up under its text.
    """
    first = indent if first_indent is None else first_indent
    paragraphs = [p for p in _PARAGRAPH_BREAK.split(text.strip()) if p.strip()]
    out = [
        textwrap.fill(
            " ".join(p.split()),
            width=width,
            initial_indent=first,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        for p in paragraphs
    ]
    return "\n\n".join(out).replace(GLUE, " ")


def with_ref(text: str, number: int) -> str:
    """'Title' → 'Title [3]', the reference glued to the last word so it never dangles alone."""
    return f"{text}{GLUE}[{number}]"


def underline(title: str, char: str = "-") -> str:
    """A heading with a rule of the same length under it (setext style)."""
    title = " ".join(title.split())
    return f"{title}\n{char * min(len(title), WIDTH)}"


class LinkRefs:
    """Numbers URLs in order of first use, so the text reads "Title [3]" with a list at the end.

    The same URL used twice keeps its first number. Jinja templates call `ref(url)` while
    rendering and `items()` at the end, after every reference has been handed out.
    """

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    def ref(self, url: str) -> int:
        """The reference number of `url`, allocating the next one on first use."""
        if url not in self._numbers:
            self._numbers[url] = len(self._numbers) + 1
        return self._numbers[url]

    def items(self) -> Iterator[tuple[int, str]]:
        """(number, url) pairs in number order."""
        for url, number in self._numbers.items():
            yield number, url

    def __len__(self) -> int:
        return len(self._numbers)

    def block(self, width: int = WIDTH) -> str:
        """The "Links" list: one "[n] URL" per line, a long URL on its own indented line."""
        lines = []
        for number, url in self.items():
            label = f"[{number}]"
            if len(label) + 1 + len(url) <= width:
                lines.append(f"{label} {url}")
            else:
                lines.append(f"{label}\n    {url}")
        return "\n".join(lines)


def tidy(text: str) -> str:
    """Collapse runs of blank lines left by template blocks, strip trailing spaces."""
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"
