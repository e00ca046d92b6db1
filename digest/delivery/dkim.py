"""DKIM signatures (RFC 6376, relaxed/relaxed) with RSA-SHA256 or Ed25519-SHA256 (RFC 8463).

Why not dkimpy's `sign()`: it does RSA in pure Python (about 11 ms per message, so
~90 messages/s per core) and re-canonicalises the whole 60 KB body every time. This
signer lets OpenSSL (via `cryptography`) make the signature and canonicalises each
static piece of a prepared message once per issue (`sign_pieces`), so per message it
only hashes the body and signs. dkimpy verifies these signatures in the tests.

Input and output are SMTP-ready bytes (CRLF line endings). The DKIM-Signature header is
folded at 78 columns and no line of it starts with a dot.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding

from digest.delivery.dkimkeys import PrivateKey, load_key
from digest.errors import SettingsError
from digest.settings import Settings

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]

#: Signed when present, in this order. RFC 8058 requires the two List-Unsubscribe headers.
SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "X-Digest-Issue",
)
#: Listed once more than they occur ("oversigned"), so nobody on the way can add one.
FROZEN_HEADERS = frozenset(
    h.lower()
    for h in (
        "From",
        "To",
        "Cc",
        "Subject",
        "Date",
        "Message-ID",
        "Reply-To",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
    )
)
_LABELS = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*$")
_WSP_RUN = re.compile(rb"[ \t]+")
_SPACES = re.compile(rb"  +")
_CACHE_MIN = 1024  # only static pieces are this long; personal ones are a line or two
_CACHE_MAX = 64
_STATIC_MAX = 4096  # pieces a message template declared static (see `remember`)


class Signer:
    """Signs messages for one domain and selector with one key."""

    def __init__(
        self,
        domain: str,
        selector: str,
        key: PrivateKey,
        *,
        headers: Sequence[str] = SIGNED_HEADERS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for what, value in (("domain", domain), ("selector", selector)):
            if not _LABELS.match(value):
                raise ValueError(f"DKIM {what} {value!r} is not a DNS name")
        self.domain = domain.lower()
        self.selector = selector
        self.key = key
        self.algorithm: Algorithm = (
            "ed25519-sha256" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa-sha256"
        )
        self._headers = [h.lower().encode() for h in headers]
        self._clock = clock
        self._canon: dict[bytes, bytes] = {}
        self._static: dict[bytes, bytes] = {}
        self._frozen = {h.encode() for h in FROZEN_HEADERS}
        self._h_names: dict[tuple[int, ...], tuple[bytes, ...]] = {}
        self._h_folded: dict[tuple[bytes, ...], str] = {}
        self._prefix = _fold_tags(
            "DKIM-Signature:",
            ["v=1;", f"a={self.algorithm};", "c=relaxed/relaxed;", f"d={self.domain};"],
        )

    # -- public -------------------------------------------------------------

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header in front."""
        return self.sign_pieces([message], remember=False)

    def sign_pieces(self, pieces: Sequence[bytes], *, remember: bool = True) -> bytes:
        """Sign a message given as pieces whose concatenation is the message.

        Long pieces that end at a line break are canonicalised once and remembered
        (`remember`), so the shared parts of an issue cost nothing after the first
        message; pass the personal values as pieces of their own.
        """
        head, body = _split_head(pieces)
        body_hash = hashlib.sha256(b"".join(_finish_body(self._canonical_body(body, remember))))
        fields = _parse_fields(head)
        names = self._names_to_sign(fields)
        header = self._signature_header(names, body_hash.digest())
        data = b"".join(_select(fields, names)) + _relaxed_header(header)[:-2]
        signature = base64.b64encode(self._sign_bytes(data)).decode()
        full = header + _fold_b64(signature) + "\r\n"
        return full.encode() + b"".join(pieces)

    def remember(self, pieces: Iterable[bytes]) -> None:
        """Canonicalise a message template's static pieces once, whatever their length.

        A template with many personal gaps (per-subscriber story links) has many short
        static runs between them; remembered here, they cost a dictionary lookup per
        message instead of being canonicalised again for every recipient.
        """
        pieces = [p for p in pieces if p.endswith(b"\r\n")]
        if len(self._static) + len(pieces) > _STATIC_MAX:
            self._static.clear()
        for piece in pieces:
            self._static[piece] = _relaxed_body(piece)

    @property
    def header_size(self) -> int:
        """About how many bytes the DKIM-Signature header adds (for size estimates)."""
        return 700 if self.algorithm == "rsa-sha256" else 420

    # -- internals ----------------------------------------------------------

    def _canonical_body(self, pieces: list[bytes], remember: bool) -> list[bytes]:
        out: list[bytes] = []
        static = self._static
        short: dict[bytes, bytes] = {}  # a personal value repeated in one message
        for group in _line_groups(pieces):
            known = static.get(group) if static else None
            if known is not None:
                out.append(known)
                continue
            if not remember or len(group) < _CACHE_MIN:
                done = short.get(group)
                if done is None:
                    done = short[group] = _relaxed_body(group)
                out.append(done)
                continue
            done = self._canon.get(group)
            if done is None:
                if len(self._canon) >= _CACHE_MAX:
                    self._canon.clear()
                done = self._canon[group] = _relaxed_body(group)
            out.append(done)
        return out

    def _names_to_sign(self, fields: dict[bytes, list[bytes]]) -> tuple[bytes, ...]:
        """h=: every configured header once per occurrence, frozen ones once more."""
        counts = tuple(len(fields.get(name, ())) for name in self._headers)
        names = self._h_names.get(counts)
        if names is None:
            out: list[bytes] = []
            for name, count in zip(self._headers, counts):
                out.extend([name] * (count + (name in self._frozen)))
            out.extend(sorted(self._frozen - set(self._headers)))
            names = self._h_names[counts] = tuple(out)
        return names

    def _signature_header(self, names: tuple[bytes, ...], body_hash: bytes) -> str:
        """The DKIM-Signature header up to an empty b= (folded; the h= part is cached)."""
        h = self._h_folded.get(names)
        if h is None:
            h = self._h_folded[names] = _fold_tags(
                "", ["h=" + ":".join(n.decode() for n in names) + ";"]
            )
        bh = base64.b64encode(body_hash).decode()
        st = _fold_tags("", [f"s={self.selector};", f"t={int(self._clock())};"])
        return f"{self._prefix}\r\n{st}\r\n{h}\r\n bh={bh};\r\n b="

    def _sign_bytes(self, data: bytes) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(hashlib.sha256(data).digest())  # RFC 8463: sign the hash
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())


# -- canonicalisation (RFC 6376 section 3.4) ----------------------------------------


def _split_head(pieces: Sequence[bytes]) -> tuple[bytes, list[bytes]]:
    """(header block ending in CRLF, body pieces) at the first empty line."""
    head = b""
    for i, piece in enumerate(pieces):
        start = max(0, len(head) - 3)
        head += piece
        cut = head.find(b"\r\n\r\n", start)
        if cut >= 0:
            rest = head[cut + 4 :]
            return head[: cut + 2], [rest, *pieces[i + 1 :]] if rest else list(pieces[i + 1 :])
    raise ValueError("message has no empty line between header and body")


def _parse_fields(head: bytes) -> dict[bytes, list[bytes]]:
    """Header fields by lower-cased name, each list in message order (folding kept)."""
    fields: dict[bytes, list[bytes]] = {}
    last: list[bytes] | None = None
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and last:
            last[-1] += b"\r\n" + line
        elif line:
            name = line.partition(b":")[0].strip(b" \t").lower()
            last = fields.setdefault(name, [])
            last.append(line)
    return fields


def _relaxed_header(field: str | bytes) -> bytes:
    raw = field.encode() if isinstance(field, str) else field
    name, _, value = raw.partition(b":")
    value = _WSP_RUN.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.strip(b" \t").lower() + b":" + value + b"\r\n"


def _select(fields: dict[bytes, list[bytes]], names: Sequence[bytes]) -> list[bytes]:
    """Canonical fields for h=, each name taking its instances from the bottom up."""
    left = {name: list(found) for name, found in fields.items()}
    out: list[bytes] = []
    for name in names:
        found = left.get(name)
        if found:
            out.append(_relaxed_field(found.pop()))
    return out


@lru_cache(maxsize=256)
def _relaxed_field(field: bytes) -> bytes:
    """`_relaxed_header` remembered: an issue's static headers (From, Subject, Date,
    List-Id ...) are the same in every message; only To, Message-ID and
    List-Unsubscribe are new each time, and age out of the cache."""
    return _relaxed_header(field)


def _line_groups(pieces: list[bytes]) -> list[bytes]:
    """Regroup pieces so every group ends at a line break (relaxed rules are per line)."""
    groups: list[bytes] = []
    pending: list[bytes] = []
    for piece in pieces:
        if not pending and piece.endswith(b"\r\n"):
            groups.append(piece)
            continue
        pending.append(piece)
        if piece.endswith(b"\r\n"):
            groups.append(b"".join(pending))
            pending = []
    if pending:
        groups.append(b"".join(pending))
    return groups


def _relaxed_body(data: bytes) -> bytes:
    """Collapse runs of whitespace to one space and drop it at line ends."""
    if b"\t" in data:
        data = data.replace(b"\t", b" ")
    if b"  " in data:
        data = _SPACES.sub(b" ", data)
    if b" \r\n" in data:
        data = data.replace(b" \r\n", b"\r\n")
    return data


def _finish_body(groups: list[bytes]) -> list[bytes]:
    """Drop empty lines at the end; a non-empty body ends with exactly one CRLF."""
    if not groups:
        return groups
    last = groups[-1]
    if len(last) > 2 and last.endswith(b"\r\n") and not last.endswith(b"\r\n\r\n"):
        return groups
    groups = list(groups)
    tail = b""
    while groups and not tail.replace(b"\r\n", b""):
        tail = groups.pop() + tail
    while tail.endswith(b"\r\n"):
        tail = tail[:-2]
    tail = tail.rstrip(b" ")
    if tail:
        groups.append(tail + b"\r\n")
    return groups


def _fold_tags(start: str, tags: list[str], width: int = 78) -> str:
    """Tags separated by spaces; a long h= list breaks after a colon (FWS is allowed there)."""
    lines, line = [], start
    for tag in tags:
        words = re.findall(r"[^:]*:|[^:]+$", tag) if len(tag) > width - 2 else [tag]
        for j, word in enumerate(words):
            sep = "" if j else " "
            if len(line) + len(sep) + len(word) > width:
                lines.append(line)
                line, sep = "", " "
            line += sep + word
    lines.append(line)
    return "\r\n".join(lines)


def _fold_b64(value: str, first: int = 72, width: int = 76) -> str:
    parts = [value[:first]]
    parts.extend(value[i : i + width] for i in range(first, len(value), width))
    return "\r\n ".join(p for p in parts if p)


# -- settings -----------------------------------------------------------------------


def signer_for(settings: Settings) -> Signer | None:
    """The configured signer, or None when DKIM is not set up (one-line SettingsError if broken)."""
    if settings.dkim_key_file is None:
        if settings.dkim_selector:
            raise SettingsError("DIGEST_DKIM_KEY_FILE: not set, but DIGEST_DKIM_SELECTOR is")
        return None
    if not settings.dkim_selector:
        raise SettingsError("DIGEST_DKIM_SELECTOR: required when DIGEST_DKIM_KEY_FILE is set")
    path = settings.dkim_key_file.expanduser()
    try:
        stat = path.stat()
        key = _cached_key(str(path), stat.st_mtime_ns, stat.st_size)
    except OSError as exc:
        raise SettingsError(f"DIGEST_DKIM_KEY_FILE: {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SettingsError(f"DIGEST_DKIM_KEY_FILE: {exc}") from None
    domain = settings.dkim_domain or settings.sender_domain
    try:
        return Signer(domain, settings.dkim_selector, key)
    except ValueError as exc:
        name = "DOMAIN" if "domain" in str(exc) else "SELECTOR"
        raise SettingsError(f"DIGEST_DKIM_{name}: {exc}") from None


@lru_cache(maxsize=4)
def _cached_key(path: str, mtime_ns: int, size: int) -> PrivateKey:
    """Parsing and checking an RSA key takes milliseconds; do it once per file version."""
    return load_key(Path(path).read_bytes(), path)


def aligned(from_domain: str, dkim_domain: str) -> bool:
    """DMARC relaxed alignment: the From domain is d= or a subdomain of it."""
    f, d = from_domain.lower().rstrip("."), dkim_domain.lower().rstrip(".")
    return f == d or f.endswith("." + d)
