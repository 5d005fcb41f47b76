"""For ``syncer validate``: the first rows of each source, mapped exactly as a plan maps them.

``sample_sources`` reads only the first ``rows`` rows of every source an integration's courses
or statistics come from, runs them through the same ``Mapper`` a plan uses, and says which are
invalid (with origin, field and reason) and whether that share of the sample is beyond the
integration's ``tolerate_invalid`` (judged by ``Tolerance.tolerates``, as the plan judges it).
Nothing is written and nothing touches the network (an SQL source runs its query, once).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field

from syncer.config import Config, IntegrationConfig, ObjectConfig
from syncer.errors import ConfigError, Problem, SourceError
from syncer.mapping.mapper import Mapper, build_mapper
from syncer.models import InvalidRow, RecordKind
from syncer.sources import load_rows

__all__ = ["DEFAULT_SAMPLE_ROWS", "SourceSample", "sample_sources"]

DEFAULT_SAMPLE_ROWS = 100
"""Rows of each source ``syncer validate`` maps unless told otherwise (``--sample-rows``)."""

_KINDS = (("courses", RecordKind.COURSE), ("stats", RecordKind.STAT))


@dataclass(frozen=True)
class SourceSample:
    """The first rows of one integration's courses or statistics source, mapped.

    ``source`` is the source's name in the config; ``read`` counts the rows read (filtered
    ones included); ``invalid`` lists the invalid ones in source order; ``error`` says why the
    source could not be opened or read (the rows before the failure are still counted);
    ``beyond_tolerance`` is True when the sample's invalid rows exceed ``tolerate_invalid``.
    """

    integration: str
    kind: str  # "courses" or "stats"
    source: str
    read: int
    invalid: list[InvalidRow] = field(default_factory=list)
    error: str | None = None
    beyond_tolerance: bool = False


def sample_sources(
    config: Config, *, rows: int = DEFAULT_SAMPLE_ROWS, integrations: Sequence[str] | None = None
) -> list[SourceSample]:
    """Map the first ``rows`` rows of each selected integration's sources (all integrations by default).

    One SourceSample per integration and kind, in config order. Raises ConfigError, with every
    problem, for field rules the API refuses (as a plan would) and for unknown integration names;
    a source that cannot be read is not raised: its sample carries the ``error``.
    """
    if rows < 0:
        raise ValueError("rows must be 0 or more")
    names = config.select(integrations)
    streams: list[tuple[IntegrationConfig, str, ObjectConfig, Mapper]] = []
    problems: list[Problem] = []
    for name in names:
        integration = config.integrations[name]
        for label, kind in _KINDS:
            spec = integration.courses if kind is RecordKind.COURSE else integration.stats
            if spec is None:
                continue
            try:
                streams.append((integration, label, spec, build_mapper(integration, kind, spec)))
            except ConfigError as exc:
                problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return [
        _sample(config, integration, label, spec, mapper, rows)
        for integration, label, spec, mapper in streams
    ]


def _sample(
    config: Config, integration: IntegrationConfig, label: str, spec: ObjectConfig, mapper: Mapper, rows: int
) -> SourceSample:
    source = config.sources.get(spec.source)
    if source is None:  # the config checks refuse this; a hand-built Config may still say it
        return SourceSample(integration.name, label, spec.source, 0, error=f"unknown source {spec.source!r}")
    read, valid = 0, 0
    invalid: list[InvalidRow] = []
    error: str | None = None
    if rows:
        try:
            with closing(load_rows(source)) as stream:
                for row in stream:
                    read += 1
                    result = mapper.map(row)
                    if isinstance(result, InvalidRow):
                        invalid.append(result)
                    elif result is not None:
                        valid += 1
                    if read >= rows:
                        break
        except SourceError as exc:
            error = str(exc)
    beyond = not spec.tolerate_invalid.tolerates(len(invalid), valid)
    return SourceSample(integration.name, label, source.name, read, invalid, error, beyond)
