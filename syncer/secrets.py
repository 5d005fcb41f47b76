"""Secrets every stage shares: a value that never shows itself, and URLs with the password hidden.

The config wraps the client secret and the database URLs in ``Secret``; the stages that must send
or open them call ``reveal()``, and every message that names a URL passes it through
``redact_url`` first.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


class Secret:
    """A value that never shows itself in output, logs, plan files or the ledger."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact_url(url: str) -> str:
    """A database or HTTP URL with its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))
