"""``load_config``: read a config file, parse, check and build it; one ConfigError lists every problem.

The YAML is parsed once, keeping node positions (``document``), so that every problem (syntax,
missing variable, schema rule, semantic check in ``checks``) is reported as
``FILE:LINE:COL: message``, all of them at once, before ``build`` makes the typed ``Config``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from syncer.config.build import build
from syncer.config.checks import check
from syncer.config.document import parse
from syncer.config.model import Config
from syncer.errors import ConfigError


def load_config(path: Path, env: Mapping[str, str] | None = None, *, offline: bool = False) -> Config:
    """Read, interpolate, validate and build the config at ``path``; raise ConfigError with every problem.

    ``offline`` is for what never calls the API (``syncer validate``): an unset variable in
    ``api.client_id``, ``client_secret``, ``base_url`` or ``company_id`` is then a warning in
    ``Config.warnings`` instead of a problem, and that value is left as written. ``Config.warnings``
    also holds, in every mode, the secrets written in the file instead of ``${VAR}``.
    """
    file = str(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError.single(file, None, None, "config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError.single(file, None, None, f"cannot read the config file: {reason}") from exc
    doc, data = parse(file, text, os.environ if env is None else env, offline=offline)
    check(doc, data)
    if doc.problems:
        raise ConfigError(sorted(doc.problems, key=lambda p: (p.line or 0, p.column or 0)))
    return build(doc, path, data)
