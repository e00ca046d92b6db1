"""What the web app throttles, and how long people are told to wait.

The counting itself is the store's (digest.store.throttle), shared with the API.
"""

from __future__ import annotations

from datetime import timedelta

from digest.store.throttle import Limit, clear, hit, purge, retry_after, take

# Sign-in limits: digest.web.loginguard.
#: Sign-up form posts per client address.
SIGNUP_PER_CLIENT = Limit("signup-client", 10, timedelta(hours=1))
#: Test-send recipients per editor: the desk cannot be used to mail strangers in bulk.
TEST_SEND_PER_EDITOR = Limit("test-send-editor", 50, timedelta(hours=1))
#: The longest window above; older events are purged.
LONGEST = timedelta(hours=24)


def minutes(wait: timedelta) -> int:
    """A wait as whole minutes for people (at least 1)."""
    return max(1, -(-int(wait.total_seconds()) // 60))


__all__ = [
    "LONGEST",
    "Limit",
    "SIGNUP_PER_CLIENT",
    "TEST_SEND_PER_EDITOR",
    "clear",
    "hit",
    "minutes",
    "purge",
    "retry_after",
    "take",
]
