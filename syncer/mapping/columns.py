"""For ``syncer validate``: do the sources have the columns that the config's mappings read?

``check_columns`` reads each source's columns once (its header, plus a sample of its rows:
JSON Lines objects need not all have the same keys) and reports every column a field,
template or filter names that its source lacks, and every source that cannot be read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from itertools import islice

from syncer.config import Config, ObjectConfig, SourceConfig
from syncer.errors import Problem, SourceError
from syncer.mapping.fields import parse_template
from syncer.mapping.mapper import config_problem
from syncer.sources import load_columns, load_rows

__all__ = ["check_columns"]


def _used_columns(spec: ObjectConfig) -> Iterator[tuple[str, str]]:
    """(column, where) of every column the fields, templates and filters read."""
    for field in spec.fields:
        if field.column is not None:
            yield field.column, field.where
        if field.template is not None:
            for name in parse_template(field.template)[1]:
                yield name, field.where
    for filt in spec.filters:
        yield filt.column, filt.where or spec.where


def check_columns(config: Config, sample_rows: int = 20) -> list[Problem]:
    """For ``syncer validate``: every mapped column the source lacks, and every unreadable source."""
    problems: list[Problem] = []
    seen: dict[str, set[str] | SourceError] = {}
    for integration in config.integrations.values():
        for spec in (integration.courses, integration.stats):
            if spec is None:
                continue
            source = config.sources.get(spec.source)
            if source is None:
                problems.append(config_problem(spec.where, f"unknown source {spec.source!r}"))
                continue
            first = source.name not in seen  # the source's own problems are reported once
            if first:
                seen[source.name] = _sample_columns(source, sample_rows)
                if isinstance(seen[source.name], SourceError):
                    problems.append(config_problem(source.where or spec.where, str(seen[source.name])))
            columns = seen[source.name]
            if isinstance(columns, SourceError):
                continue
            listed = ", ".join(sorted(columns)) or "none"
            if first and source.cursor is not None and source.cursor not in columns:
                problems.append(
                    config_problem(
                        source.where or spec.where,
                        f"cursor column {source.cursor!r} is not a column of source {source.name!r} "
                        f"(its query gives: {listed})",
                    )
                )
            for column, where in _used_columns(spec):
                if column not in columns:
                    problems.append(
                        config_problem(
                            where or spec.where,
                            f"column {column!r} is not in source {source.name!r} (it has: {listed})",
                        )
                    )
    return problems


def _sample_columns(source: SourceConfig, sample_rows: int) -> set[str] | SourceError:
    try:
        columns = set(load_columns(source))
        with closing(load_rows(source)) as rows:
            for row in islice(rows, sample_rows):
                columns.update(row.values)  # JSON Lines objects need not all have the same keys
        return columns
    except SourceError as exc:
        return exc
