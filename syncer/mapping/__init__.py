"""Stage 3, the mapping: source rows -> API objects (or invalid rows), checked against the API's schemas."""

from __future__ import annotations

from syncer.mapping.mapper import (
    ApiValidator as ApiValidator,
)
from syncer.mapping.mapper import (
    Check as Check,
)
from syncer.mapping.mapper import (
    Mapper as Mapper,
)
from syncer.mapping.mapper import (
    build_checker as build_checker,
)
from syncer.mapping.mapper import (
    build_mapper as build_mapper,
)
from syncer.mapping.mapper import (
    check_columns as check_columns,
)
from syncer.mapping.mapper import (
    load_api_validator as load_api_validator,
)
from syncer.mapping.mapper import (
    map_source as map_source,
)

__all__ = [
    "ApiValidator",
    "Check",
    "Mapper",
    "build_checker",
    "build_mapper",
    "check_columns",
    "load_api_validator",
    "map_source",
]
