"""Quoted-printable that is SMTP-ready as encoded: CRLF lines, <= 76 columns, and no
line starting with a dot (a leading "." becomes "=2E"), so messages never need
dot-stuffing on the way out.

Static parts are encoded once per issue; personal values are encoded per
recipient as self-contained runs that start at column 0 and end in a soft break,
so they splice between static runs without re-encoding anything.
"""

from __future__ import annotations

import binascii
import re

MAX_LINE = 76
SOFT_BREAK = b"=\r\n"
_PLAIN_SAFE = re.compile(rb"[\x21-\x3c\x3e-\x7e]*\Z")  # printable ASCII except "=" and space


def _fix_line(line: bytes) -> list[bytes]:
    """Encode a leading dot and re-wrap a line that grew past MAX_LINE."""
    if line.startswith(b"."):
        line = b"=2E" + line[1:]
    out: list[bytes] = []
    while len(line) > MAX_LINE:
        cut = MAX_LINE - 1
        while line[cut - 1 : cut] == b"=" or line[cut - 2 : cut - 1] == b"=":
            cut -= 1
        out.append(line[:cut] + b"=")
        line = line[cut:]
        if line.startswith(b"."):
            line = b"=2E" + line[1:]
    out.append(line)
    return out


def encode(data: bytes) -> bytes:
    """QP-encode text with CRLF line breaks; the result has no line starting with '.'."""
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    # b2a_qp picks its soft-break style from the first line ending it sees; make it CRLF.
    encoded = encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if (
        b"\r\n." not in encoded
        and not encoded.startswith(b".")
        and all(len(line) <= MAX_LINE for line in encoded.split(b"\r\n"))
    ):
        return encoded
    lines = encoded.split(b"\r\n")
    fixed: list[bytes] = []
    for line in lines:
        fixed.extend(_fix_line(line) if line.startswith(b".") or len(line) > MAX_LINE else [line])
    return b"\r\n".join(fixed)


def encode_run(data: bytes) -> bytes:
    """Encode a piece that will be spliced mid-line: it ends in a soft line break.

    Together with static runs that also end in a soft break (see `seal`), every
    spliced value starts at column 0, so line lengths stay within limits.
    """
    if len(data) < MAX_LINE and _PLAIN_SAFE.match(data) and not data.startswith(b"."):
        return data + SOFT_BREAK
    encoded = encode(data)
    if encoded.endswith(b"\r\n"):
        return encoded
    return encoded + SOFT_BREAK


def seal(encoded: bytes) -> bytes:
    """Make a static run end at a line boundary (soft break unless it ends with CRLF)."""
    if not encoded or encoded.endswith(b"\r\n"):
        return encoded
    return encoded + SOFT_BREAK


def decode(data: bytes) -> bytes:
    return binascii.a2b_qp(data)
