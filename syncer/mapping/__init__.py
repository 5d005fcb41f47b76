"""Stage 3, the mapping: source rows -> API objects (or invalid rows), checked against the API's schemas.

Modules, from the bottom: ``checker`` (the API's JSON Schemas compiled into Python code),
``values`` (cell values -> field values: parsers and transforms), ``fields`` (a config
object's field rules and filters compiled into one row function), ``mapper`` (the Mapper:
rows -> Record, InvalidRow, or the planner's StagedRow), ``columns`` (``syncer validate``'s
check that the sources hold the mapped columns), ``sample`` (``syncer validate``'s first rows of
each source, mapped as a plan maps them).
"""

from __future__ import annotations

from syncer.mapping.checker import (
    ApiValidator as ApiValidator,
)
from syncer.mapping.checker import (
    Check as Check,
)
from syncer.mapping.checker import (
    build_checker as build_checker,
)
from syncer.mapping.checker import (
    load_api_validator as load_api_validator,
)
from syncer.mapping.columns import (
    check_columns as check_columns,
)
from syncer.mapping.mapper import (
    Mapper as Mapper,
)
from syncer.mapping.mapper import (
    build_mapper as build_mapper,
)
from syncer.mapping.mapper import (
    map_source as map_source,
)
from syncer.mapping.sample import (
    DEFAULT_SAMPLE_ROWS as DEFAULT_SAMPLE_ROWS,
)
from syncer.mapping.sample import (
    SourceSample as SourceSample,
)
from syncer.mapping.sample import (
    sample_sources as sample_sources,
)

__all__ = [
    "DEFAULT_SAMPLE_ROWS",
    "ApiValidator",
    "Check",
    "Mapper",
    "SourceSample",
    "build_checker",
    "build_mapper",
    "check_columns",
    "load_api_validator",
    "map_source",
    "sample_sources",
]
