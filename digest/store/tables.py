"""Every table of the installation, for migrations and tools that need the whole schema.

Each stage owns its tables (`digest.editorial.models`, `digest.delivery.models`,
`subscribers.model`, `digest.editors.models`, `digest.store.leases`,
`digest.store.throttle`, `digest.store.memo`, `digest.stats.models`); the running code
imports only what it uses. This is the one place that imports them all, which only
schema tools need (Alembic's environment, the tests' clean-up).
"""

from __future__ import annotations

import importlib

MODEL_MODULES = (
    "subscribers.model",
    "digest.store.leases",
    "digest.store.throttle",
    "digest.store.memo",
    "digest.editors.models",
    "digest.editorial.models",
    "digest.delivery.models",
    "digest.stats.models",
    "subscribers.erasures",
    "digest.api.keys",
    "digest.webhooks.models",
    "digest.candidates.models",
)


def register_all() -> None:
    """Import every module that defines tables, so Base.metadata holds them all."""
    for name in MODEL_MODULES:
        importlib.import_module(name)
