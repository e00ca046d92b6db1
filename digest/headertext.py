"""Text that ends up in a mail header: no line breaks, no bidirectional controls.

A right-to-left override (U+202E) in a subject or a display name makes a client show
the text reversed after it ("moc.elgoog" reads as "google.com"): it is refused in
anything we put in a header (subjects, names, DIGEST_FROM, list names), and removed
where a header is derived from other text (a default subject from a story title).
"""

from __future__ import annotations

import re

#: Unicode's Bidi_Control characters: ALM, LRM, RLM, the embeddings and overrides
#: (LRE RLE PDF LRO RLO) and the isolates (LRI RLI FSI PDI).
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
BIDI = re.compile(f"[{BIDI_CONTROLS}]")


def check_header_safe(value: str) -> str:
    """Refuse values that could smuggle a header line (CR, LF, NUL) or reorder text."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError("must not contain line breaks")
    if BIDI.search(value):
        raise ValueError("must not contain bidirectional control characters (such as U+202E)")
    return value


def strip_bidi(value: str) -> str:
    return BIDI.sub("", value)


__all__ = ["BIDI", "BIDI_CONTROLS", "check_header_safe", "strip_bidi"]
