"""Learner e-mails replaced by a stable short token, for plans and logs that others read.

``syncer plan --redact`` and ``syncer apply --redact`` (or ``output: {redact: true}`` in the
config) pass what they print, and every log line, through ``redact_text``: each e-mail address
becomes ``learner-`` and 10 hex digits of a hash of the address (trimmed, lower-cased). The same
address gives the same token in every run, on every machine, so two plans can be compared line by
line. 40 bits of hash: a million learners give less than one expected collision (0.45).

This is pseudonymisation, not anonymisation: the hash has no secret, so whoever knows an address
can compute its token and find that learner's lines (docs/gitops.md).
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from syncer.progress import STANDARD_LOG_ATTRS

__all__ = [
    "LOG_FILTER",
    "MAIL",
    "TOKEN_PREFIX",
    "RedactingFilter",
    "mail_token",
    "redact_data",
    "redact_text",
]

TOKEN_PREFIX = "learner-"
_TOKEN_HEX = 10

# Anything shaped like an address: a local part (RFC 5322's atom characters, dots and apostrophes
# inside it), "@", a domain of one or more labels (``learner@x`` counts). Quotes, backticks,
# pipes, brackets and blanks end it, so the JSON, markdown and text around it are kept; a
# trailing dot is a sentence's, not the domain's.
_ATOM = r"[\w!#$%&*+/=?^{}~-]+"
MAIL = re.compile(rf"{_ATOM}(?:[.']{_ATOM})*@[\w-]+(?:\.[\w-]+)*")
"""What ``redact_text`` replaces."""


def mail_token(mail: str) -> str:
    """``learner-3f9a1c2b7d``: the same for the same address, whatever its case or outer blanks."""
    digest = hashlib.blake2b(mail.strip().lower().encode(), digest_size=_TOKEN_HEX // 2)
    return TOKEN_PREFIX + digest.hexdigest()


def _replace(match: re.Match[str]) -> str:
    return mail_token(match.group(0))


def redact_text(text: str) -> str:
    """``text`` with every e-mail address replaced by its token (``mail_token``)."""
    if "@" not in text:  # the common case, and the fast one
        return text
    return MAIL.sub(_replace, text)


def redact_data(value: Any) -> Any:
    """JSON-ready data with every string (values and keys) passed through ``redact_text``."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """A log filter that redacts a line's message and its extra fields (the JSON keys of a line).

    Installed on the ``syncer`` logger's handler by ``syncer.progress.add_log_filter``; it never
    drops a line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; keep it."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: leave it to the handler's own error path
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        for key, value in list(vars(record).items()):
            if key in STANDARD_LOG_ATTRS or key.startswith("_"):
                continue
            if isinstance(value, str | list | tuple | dict):
                setattr(record, key, redact_data(value))
        return True


LOG_FILTER = RedactingFilter()
"""The one filter the CLI installs (``syncer.progress.add_log_filter``) and removes again."""
