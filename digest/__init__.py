"""digest: a hand-picked weekly newsletter, rendered once and sent exactly once per reader.

The pipeline, one way: picks -> issue (frozen snapshot) -> render once (Jinja -> MJML ->
HTML + text) -> per-recipient bytes -> transport (SMTP pool or outbox) -> ledger.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
