"""Getting the bytes of an import: a local file or an http(s) URL, with a size cap.

Also guesses the format from the file name, the Content-Type or the first bytes, so
`digest picks import` needs no --format option.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import urlsplit

from digest.errors import InputError, MissingExtra

FETCH_TIMEOUT = 10.0
MAX_REDIRECTS = 5
_USER_AGENT = "digest-pick-import/1.0"
_ACCEPT = "application/rss+xml, application/atom+xml, application/json, application/yaml, */*"
XML_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s*<(?:\?xml|rss|feed|rdf:RDF)\b", re.IGNORECASE)


def read_source(source: str, max_bytes: int) -> tuple[bytes, str | None, str | None]:
    """Return (bytes, kind hint, base URL) for a path or an http(s) URL."""
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        data, content_type, final_url = fetch(source, max_bytes=max_bytes)
        hint = _kind_from_type(content_type) or _kind_from_suffix(urlsplit(final_url).path)
        return data, hint, final_url
    if "://" in source:
        raise InputError(
            f"only http:// and https:// URLs can be imported, not {scheme}://", source=source
        )
    path = Path(source).expanduser()
    try:
        if not path.is_file():
            raise InputError(
                "no such file" if not path.exists() else "is not a file", source=source
            )
        if path.stat().st_size > max_bytes:
            raise InputError(_too_large(path.stat().st_size, max_bytes), source=source)
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror or exc}", source=source) from None
    if len(data) > max_bytes:
        raise InputError(_too_large(None, max_bytes), source=source)
    return data, _kind_from_suffix(path.name), None


def fetch(url: str, *, max_bytes: int, timeout: float = FETCH_TIMEOUT) -> tuple[bytes, str, str]:
    """GET `url` with a timeout, a size cap and at most MAX_REDIRECTS redirects.

    Returns (body, content type, final URL). Every failure is a one-line InputError.
    """
    try:  # httpx is always installed (webhooks); the [feeds] extra is what URL imports need
        import defusedxml  # noqa: F401
        import httpx
    except ImportError:
        raise MissingExtra("feeds", f"{url}: importing picks from a URL") from None
    deadline = time.monotonic() + 3 * timeout  # a server dripping bytes cannot hold us forever
    headers = {"User-Agent": _USER_AGENT, "Accept": _ACCEPT}
    try:
        with (
            httpx.Client(
                timeout=timeout,
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
                headers=headers,
            ) as client,
            client.stream("GET", url) as resp,
        ):
            if not resp.is_success:
                msg = f"the server answered HTTP {resp.status_code} {resp.reason_phrase}".rstrip()
                raise InputError(msg, source=url)
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise InputError(_too_large(int(declared), max_bytes), source=url)
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise InputError(_too_large(None, max_bytes), source=url)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("download too slow", request=resp.request)
            return bytes(body), resp.headers.get("content-type", ""), str(resp.url)
    except httpx.TooManyRedirects:
        raise InputError(f"too many redirects (more than {MAX_REDIRECTS})", source=url) from None
    except httpx.TimeoutException:
        raise InputError(f"timed out (limit {timeout:g} s)", source=url) from None
    except httpx.ConnectError as exc:
        raise InputError(f"cannot connect: {exc}", source=url) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise InputError(f"download failed: {exc}", source=url) from None


def _too_large(size: int | None, limit: int) -> str:
    """`size` is None when the download was cut off at the limit and its real size is unknown."""
    if size is None:
        return f"too large (more than the limit of {_human(limit)})"
    return f"too large ({_human(size)}; the limit is {_human(limit)})"


def _human(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1e6:.1f} MB"
    return f"{size / 1e3:.1f} kB" if size >= 1000 else f"{size} bytes"


def _kind_from_suffix(name: str) -> str | None:
    suffix = Path(name).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    if suffix in (".xml", ".rss", ".atom", ".rdf"):
        return "feed"
    return None


def _kind_from_type(content_type: str) -> str | None:
    ctype = content_type.split(";")[0].strip().lower()
    if "json" in ctype:
        return "json"
    if "yaml" in ctype:
        return "yaml"
    if ctype.endswith(("xml", "rss", "atom")):
        return "feed"
    return None


def sniff(data: bytes) -> str:
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return "feed"
    return "json" if head[:1] in (b"[", b"{") else "yaml"


def decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError("is not UTF-8 text", source=source, line=line) from None
