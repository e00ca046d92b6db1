"""One exception hierarchy: everything a user can cause is a DigestError.

The command line turns a DigestError into one line on stderr and its exit code,
never a traceback.
"""

from __future__ import annotations


class DigestError(Exception):
    """Base of every error the user can cause or fix."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SettingsError(DigestError):
    """A setting is missing or has a value that is not allowed."""

    exit_code = 2


class MissingExtra(DigestError):
    """An optional part of digest is not installed; names the pip extra that provides it."""

    exit_code = 2

    def __init__(self, extra: str, needed_for: str) -> None:
        from digest import DISTRIBUTION

        super().__init__(f"{needed_for}: install {DISTRIBUTION}[{extra}]")
        self.extra = extra


class InputError(DigestError):
    """A file or argument from the user is bad; names file, line and field."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        where = ""
        if source:
            where = source
            if line is not None:
                where += f":{line}"
            where += ": "
        elif line is not None:
            where = f"line {line}: "
        if field:
            where += f"{field}: "
        super().__init__(where + message)
        self.source, self.line, self.field = source, line, field


class NotFound(DigestError):
    """An issue, pick or subscriber named by the user does not exist."""


class StateError(DigestError):
    """The request does not fit the current state (e.g. re-freezing a sent issue)."""


class TransportError(DigestError):
    """The transport cannot be used at all (bad host, refused TLS...)."""
