"""``load_config``: read a config (a file or a directory), parse, check and build it; one
ConfigError lists every problem.

Each file is parsed once, keeping node positions (``document``); ``files`` finds the files of a
config and merges their data, so that every problem (syntax, missing variable, schema rule,
semantic check in ``checks``) is reported as the ``FILE:LINE:COL`` of the file that holds it, all
of them at once, before ``build`` makes the typed ``Config``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from syncer.config.build import build
from syncer.config.checks import check
from syncer.config.files import read_config
from syncer.config.model import Config
from syncer.errors import ConfigError


def load_config(path: Path, env: Mapping[str, str] | None = None, *, offline: bool = False) -> Config:
    """Read, interpolate, validate and build the config at ``path``; raise ConfigError with every problem.

    ``path`` is a config file or a config directory (``syncer.yaml`` and part files: see
    ``syncer.config.files`` and docs/config.md). ``offline`` is for what never calls the API
    (``syncer validate``): an unset variable in ``api.client_id``, ``client_secret``, ``base_url``
    or ``company_id`` is then a warning in ``Config.warnings`` instead of a problem, and that
    value is left as written. ``Config.warnings`` also holds, in every mode, the secrets written
    in a file instead of ``${VAR}``.
    """
    doc, data = read_config(path, os.environ if env is None else env, offline=offline)
    check(doc, data)
    problems = doc.all_problems()
    if problems:
        # The warnings about whole files (one not read) go with them: they may explain a problem
        # ("missing required key 'integrations'" when a directory's syncer.yaml is given alone).
        raise ConfigError(problems, [w for w in doc.all_warnings() if w.line is None])
    return build(doc, path, data)
