"""Placeholders for the personal parts of a message.

The issue is rendered once with these markers in place; per recipient, only the
marked spots are filled in (see digest.message). They are plain ASCII words so
that MJML, Jinja and text wrapping pass them through untouched.
"""

from __future__ import annotations

#: The recipient's own one-click unsubscribe URL (also in List-Unsubscribe).
UNSUBSCRIBE_URL = "__DIGEST_UNSUBSCRIBE_URL__"
#: The greeting line, e.g. "Hello Anna," or "Hello," when no name is known.
GREETING = "__DIGEST_GREETING__"
#: The recipient's own page to choose newsletters or leave them all.
PREFERENCES_URL = "__DIGEST_PREFERENCES_URL__"
#: The end of every counted story link with DIGEST_CLICK_STATS=per-subscriber: the
#: reader's own signed part ("/" + token, digest.stats.links), or nothing (test sends,
#: the web version), which leaves the link an aggregate one.
READER = "__DIGEST_READER__"

ALL = (UNSUBSCRIBE_URL, GREETING, PREFERENCES_URL, READER)
MARKER_PREFIX = "__DIGEST_"


def scrub(text: str) -> str:
    """Keep user text from impersonating a slot."""
    return text.replace(MARKER_PREFIX, "__DIGEST\u200b_") if MARKER_PREFIX in text else text
