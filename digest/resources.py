"""Files that ship inside the installed package: the built-in templates.

In the repository the templates live in the top-level `templates/` folder, where
editors find them; the wheel carries the same folder as the package
`digest.templates` (a setuptools package-dir mapping), so an installed digest finds
them through `importlib.resources` wherever it runs. DIGEST_TEMPLATES_DIR names a
folder whose files override these one by one.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

TEMPLATES_PACKAGE = "digest.templates"


@cache
def builtin_templates() -> Path:
    """The folder holding the built-in email templates (and `web/` for the pages)."""
    root = resources.files(TEMPLATES_PACKAGE)
    path = Path(str(root))
    if not (path / "digest.mjml.j2").is_file():  # pragma: no cover - a broken install
        raise RuntimeError(f"digest's built-in templates are missing from {path}")
    return path
