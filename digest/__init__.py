"""digest: a hand-picked weekly newsletter, rendered once and sent exactly once per reader.

The pipeline, one way: picks -> issue (frozen snapshot) -> render once (Jinja -> MJML ->
HTML + text) -> per-recipient bytes -> transport (SMTP pool or outbox) -> ledger.
"""

from __future__ import annotations

__version__ = "0.1.0"
#: The name on PyPI (`digest` there is an unrelated project); the import package and the
#: `digest` command keep their names.
DISTRIBUTION = "digest-newsletter"

__all__ = ["DISTRIBUTION", "__version__"]
