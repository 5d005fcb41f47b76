"""The one place that locates ``schemas/`` and ``migrations/`` (checkout or installed wheel)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _locate(name: str) -> Path:
    # An installed wheel carries the folders under syncer/_data (see pyproject's force-include);
    # a checkout or an editable install has them beside the package.
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"syncer is installed without its {name}/ folder")


@cache
def schemas_dir() -> Path:
    """The folder of JSON Schemas (config, API objects, plan output)."""
    return _locate("schemas")


@cache
def migrations_dir() -> Path:
    """The Alembic script folder of the ledger."""
    return _locate("migrations")


def schema_path(name: str) -> Path:
    """The path of one schema file, e.g. ``config.schema.json`` or ``api/statistic.schema.json``."""
    return schemas_dir() / name
