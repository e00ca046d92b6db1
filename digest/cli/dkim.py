"""`digest dkim keygen` and `digest dkim verify`: set up DKIM and check a signed message."""

from __future__ import annotations

import logging
import re
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from digest.cli.app import app
from digest.cli.common import fail, settings
from digest.delivery import dkim, dkimkeys

dkim_app = typer.Typer(help="DKIM signing keys: make one, check a signed message.")
app.add_typer(dkim_app, name="dkim")


@dkim_app.command("keygen")
def keygen(
    selector: Annotated[
        str | None,
        typer.Option(help="DNS selector (default: DIGEST_DKIM_SELECTOR or digestYYYYMM)."),
    ] = None,
    domain: Annotated[
        str | None,
        typer.Option(help="Signing domain (default: DIGEST_DKIM_DOMAIN or the From domain)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Key file (default: DIGEST_DKIM_KEY_FILE or dkim-SELECTOR.pem)."),
    ] = None,
    ed25519: Annotated[bool, typer.Option("--ed25519", help="Ed25519 instead of RSA.")] = False,
    bits: Annotated[int, typer.Option(help="RSA key size.", min=2048, max=4096)] = 2048,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key file.")] = False,
) -> None:
    """Write a new private key (mode 0600) and print the DNS TXT record to publish.

    Gmail and Yahoo require DKIM for bulk mail. Publish the record, wait for it to be
    visible, then set the three DIGEST_DKIM_* settings printed at the end.
    """
    s = settings()
    selector = selector or s.dkim_selector or f"digest{date.today():%Y%m}"
    domain = (domain or s.dkim_domain or s.sender_domain).lower().rstrip(".")
    if "." not in domain or domain.endswith(".localhost") or domain == "localhost":
        fail(f"--domain: {domain!r} is not a public domain; pass the domain you send from")
    out = (out or s.dkim_key_file or Path(f"dkim-{selector}.pem")).expanduser()
    try:
        key = dkimkeys.generate_key("ed25519" if ed25519 else "rsa", bits)
        dkim.Signer(domain, selector, key)  # validates the names before anything is written
        dkimkeys.write_private_key(out, key, overwrite=force)
    except (ValueError, FileExistsError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{out}: {exc.strerror}")
    kind = "Ed25519" if ed25519 else f"RSA {bits}-bit"
    typer.echo(f"Wrote the {kind} private key to {out} (mode 0600; keep it secret).\n")
    typer.echo(f"Publish this TXT record in the DNS zone of {domain}:\n")
    typer.echo(dkimkeys.zone_record(selector, domain, key) + "\n")
    typer.echo("Then set (e.g. in .env):")
    typer.echo(f"DIGEST_DKIM_KEY_FILE={out.resolve()}")
    typer.echo(f"DIGEST_DKIM_SELECTOR={selector}")
    typer.echo(f"DIGEST_DKIM_DOMAIN={domain}")


@dkim_app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="A message file, e.g. build/sample.eml.")],
    dns: Annotated[
        bool,
        typer.Option("--dns", help="Look the key up in the DNS instead of using the key file."),
    ] = False,
) -> None:
    """Check a message's DKIM signature with dkimpy, an independent implementation.

    Without --dns the public key comes from DIGEST_DKIM_KEY_FILE, so this works
    before the DNS record is published; with --dns it checks what receivers will see.
    """
    import dkim as dkimpy

    try:
        data = file.read_bytes()
    except OSError as exc:
        fail(f"{file}: {exc.strerror}")
    head = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0]
    if not re.search(rb"(?im)^dkim-signature:", head):
        fail(f"{file}: the message has no DKIM-Signature header")
    dnsfunc = None
    if not dns:
        signer = dkim.signer_for(settings())
        if signer is None:
            fail("DIGEST_DKIM_KEY_FILE: not set; configure DKIM or pass --dns")
        assert signer is not None
        name = f"{signer.selector}._domainkey.{signer.domain}.".encode()
        record = dkimkeys.txt_value(signer.key).encode()

        def dnsfunc(qname: bytes, timeout: int = 5) -> bytes | None:
            return record if qname.lower() == name.lower() else None

    reasons = _Reasons()
    checker = dkimpy.DKIM(data, logger=reasons.logger)
    try:
        ok = checker.verify(dnsfunc=dnsfunc) if dnsfunc is not None else checker.verify()
    except dkimpy.DKIMException as exc:
        fail(f"{file}: DKIM signature does not verify: {exc}")
    if not ok:
        why = reasons.last() or "changed after signing, or signed with another key"
        fail(f"{file}: DKIM signature does not verify: {why}")
    sig = checker.signature_fields
    d, s, a = (sig.get(k, b"?").decode() for k in (b"d", b"s", b"a"))
    typer.echo(f"{file}: DKIM signature verifies (d={d} s={s} a={a})")


class _Reasons(logging.Handler):
    """Collects what dkimpy logs, to give the reason instead of printing a log line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.logger = logging.getLogger(f"digest.dkim.verify.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split())[:200])

    def last(self) -> str | None:
        return self.messages[-1] if self.messages else None
