"""Stage 1, the config: YAML files -> a checked, typed ``Config`` (positions kept for errors).

``loader`` ties the modules together: ``document`` (the YAML with positions and ``${VAR}``),
``checks`` (schema and semantic problems), ``build`` (data -> the frozen ``model``). ``Secret``
and ``redact_url`` live in ``syncer.secrets``; they are re-exported here for the other stages.
"""

from __future__ import annotations

from syncer.config.checks import config_schema as config_schema
from syncer.config.loader import load_config as load_config
from syncer.config.model import REGIONS as REGIONS
from syncer.config.model import ApiConfig as ApiConfig
from syncer.config.model import BatchSizes as BatchSizes
from syncer.config.model import Config as Config
from syncer.config.model import FieldSpec as FieldSpec
from syncer.config.model import FieldType as FieldType
from syncer.config.model import FilterOp as FilterOp
from syncer.config.model import FilterSpec as FilterSpec
from syncer.config.model import IntegrationConfig as IntegrationConfig
from syncer.config.model import Limits as Limits
from syncer.config.model import NotifyFormat as NotifyFormat
from syncer.config.model import NotifyOutcome as NotifyOutcome
from syncer.config.model import ObjectConfig as ObjectConfig
from syncer.config.model import OnDrift as OnDrift
from syncer.config.model import SourceConfig as SourceConfig
from syncer.config.model import SourceKind as SourceKind
from syncer.config.model import Tolerance as Tolerance
from syncer.config.model import UnsafeChange as UnsafeChange
from syncer.config.model import Webhook as Webhook
from syncer.config.model import Window as Window
from syncer.secrets import Secret as Secret
from syncer.secrets import redact_url as redact_url

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
    "NotifyFormat",
    "NotifyOutcome",
    "ObjectConfig",
    "OnDrift",
    "Secret",
    "SourceConfig",
    "SourceKind",
    "Tolerance",
    "UnsafeChange",
    "Webhook",
    "Window",
    "config_schema",
    "load_config",
    "redact_url",
]
