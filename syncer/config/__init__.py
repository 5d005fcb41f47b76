"""Stage 1, the config: YAML files -> a checked, typed ``Config`` (positions kept for errors)."""

from __future__ import annotations

from syncer.config.loader import (
    REGIONS as REGIONS,
)
from syncer.config.loader import (
    ApiConfig as ApiConfig,
)
from syncer.config.loader import (
    BatchSizes as BatchSizes,
)
from syncer.config.loader import (
    Config as Config,
)
from syncer.config.loader import (
    FieldSpec as FieldSpec,
)
from syncer.config.loader import (
    FieldType as FieldType,
)
from syncer.config.loader import (
    FilterOp as FilterOp,
)
from syncer.config.loader import (
    FilterSpec as FilterSpec,
)
from syncer.config.loader import (
    IntegrationConfig as IntegrationConfig,
)
from syncer.config.loader import (
    Limits as Limits,
)
from syncer.config.loader import (
    ObjectConfig as ObjectConfig,
)
from syncer.config.loader import (
    Secret as Secret,
)
from syncer.config.loader import (
    SourceConfig as SourceConfig,
)
from syncer.config.loader import (
    SourceKind as SourceKind,
)
from syncer.config.loader import (
    Tolerance as Tolerance,
)
from syncer.config.loader import (
    UnsafeChange as UnsafeChange,
)
from syncer.config.loader import (
    config_schema as config_schema,
)
from syncer.config.loader import (
    load_config as load_config,
)
from syncer.config.loader import (
    redact_url as redact_url,
)

__all__ = [
    "REGIONS",
    "ApiConfig",
    "BatchSizes",
    "Config",
    "FieldSpec",
    "FieldType",
    "FilterOp",
    "FilterSpec",
    "IntegrationConfig",
    "Limits",
    "ObjectConfig",
    "Secret",
    "SourceConfig",
    "SourceKind",
    "Tolerance",
    "UnsafeChange",
    "config_schema",
    "load_config",
    "redact_url",
]
