"""Page rendering: the Jinja environment for templates/web/ and a `render` helper.

Autoescape is always on. A folder `web/` inside DIGEST_TEMPLATES_DIR overrides single
pages; everything else comes from the built-in templates/web/. Templates get the
site's strings, the signed-in editor (if any), and `csrf()`, which makes the form
token only when a form is actually rendered (so plain pages set no cookie).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from digest.editorial.render import date_label, issue_label
from digest.resources import builtin_templates
from digest.settings import Settings
from digest.web.security import CSRF_FIELD, csrf_token

STATIC_DIR = Path(__file__).resolve().parent / "static"


def local_time(value: datetime | None, settings: Settings) -> str:
    if value is None:
        return "—"
    local = value.astimezone(settings.tz)
    return f"{local:%a %d %b %Y, %H:%M} {local.tzname()}"


def _utc_time(value: datetime | None) -> str:
    return f"{value.astimezone(UTC):%a %H:%M} UTC" if value else "—"


@lru_cache(maxsize=1)
def static_versions() -> dict[str, str]:
    """Content hashes for cache-busting `?v=` parameters on static files."""
    out = {}
    for path in STATIC_DIR.iterdir():
        if path.is_file():
            out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return out


def static_url(name: str) -> str:
    return f"/static/{name}?v={static_versions().get(name, '0')}"


@lru_cache(maxsize=4)
def environment(templates_dir: str | None) -> jinja2.Environment:
    """Pages from `web/` in DIGEST_TEMPLATES_DIR first, then the built-in ones."""
    folders = [str(builtin_templates() / "web")]
    if templates_dir is not None:
        folders.insert(0, str(Path(templates_dir) / "web"))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static_url"] = static_url
    env.globals["issue_label"] = issue_label
    env.globals["date_label"] = date_label
    env.globals["CSRF_FIELD"] = CSRF_FIELD
    return env


def site(settings: Settings) -> dict[str, Any]:
    return {
        "list_name": settings.list_name,
        "postal_address": settings.postal_address,
        "privacy_url": settings.effective_privacy_url,
        "support_url": settings.effective_support_url,
        "base_url": settings.base_url,
    }


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render templates/web/`name` into an HTML response."""
    settings: Settings = request.app.state.settings
    override = settings.templates_dir
    env = environment(str(Path(override).resolve()) if override is not None else None)
    ctx = {
        "request": request,
        "site": site(settings),
        "editor": getattr(request.state, "editor", None),
        "csrf": lambda: csrf_token(request),
        "when": lambda value: local_time(value, settings),
        "utc_time": _utc_time,
        "notice": None,
        "error": None,
        "error_field": None,
        **(context or {}),
    }
    html = env.get_template(name).render(ctx)
    return HTMLResponse(html, status_code=status_code, headers=headers)
