"""DKIM keys: load, generate, write (mode 0600), and the DNS TXT record to publish."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
MIN_RSA_BITS = 1024  # receivers ignore shorter keys (RFC 8301)
MIN_RECOMMENDED_RSA_BITS = 2048


def load_key(data: bytes, source: str = "key") -> PrivateKey:
    """A PEM RSA or Ed25519 private key, or dkimpy's base64 Ed25519 seed."""
    stripped = data.strip()
    if not stripped.startswith(b"-----"):
        try:
            seed = base64.b64decode(stripped, validate=True)
        except ValueError:
            seed = b""
        if len(seed) == 32:
            return ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        raise ValueError(f"{source}: not a PEM private key (run `digest dkim keygen`)")
    try:
        key = serialization.load_pem_private_key(stripped, password=None)
    except TypeError:
        raise ValueError(f"{source}: the key is encrypted; DKIM needs an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"{source}: not a readable PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"{source}: RSA key of {key.key_size} bits; DKIM needs at least 1024")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise ValueError(
        f"{source}: {type(key).__name__} keys are not used by DKIM; use RSA or Ed25519"
    )


def generate_key(algorithm: Literal["rsa", "ed25519"] = "rsa", bits: int = 2048) -> PrivateKey:
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if bits < 2048:
        raise ValueError("RSA keys for DKIM should have at least 2048 bits")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def txt_value(key: PrivateKey) -> str:
    """The value of the selector's DNS TXT record (RFC 6376 section 3.6.1)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def zone_record(selector: str, domain: str, key: PrivateKey) -> str:
    """A zone-file line; long values are split into <=255-byte strings as DNS requires."""
    value = txt_value(key)
    chunks = [value[i : i + 250] for i in range(0, len(value), 250)]
    quoted = " ".join(f'"{c}"' for c in chunks)
    return f"{selector}._domainkey.{domain}. IN TXT ( {quoted} )"


def write_private_key(path: Path, key: PrivateKey, *, overwrite: bool = False) -> None:
    """Write the key with mode 0600, atomically; never replace a key unless asked."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(private_pem(key))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
