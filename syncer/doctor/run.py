"""``syncer doctor``'s order: config, sources, ledger, then the platform; a check that cannot run
because an earlier one failed is reported as skipped."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from syncer.doctor.checks import (
    Check,
    CheckStatus,
    DoctorReport,
    check_config,
    check_sources,
    config_warnings,
    credential_variables,
    skipped,
)
from syncer.doctor.ledger import check_ledger
from syncer.doctor.platform import check_platform
from syncer.errors import ConfigError, SyncerError

__all__ = ["run_doctor"]

_AFTER_CONFIG = ("sources", "ledger", "API host", "credentials", "scopes", "integrations", "limits")


def run_doctor(config_path: Path, integrations: Sequence[str] | None = None) -> DoctorReport:
    """Run every check for the config (and only the named integrations, when given)."""
    config_check, config = check_config(config_path, integrations)
    if config is None:
        checks = [config_check, *skipped(_AFTER_CONFIG, "the config is not valid")]
        return DoctorReport(config_path, tuple(checks))
    names = list(dict.fromkeys(integrations)) if integrations else list(config.integrations)
    checks = [config_check, *config_warnings(config)]
    try:
        checks.extend(check_sources(config, names))
    except ConfigError as exc:  # field rules the API refuses: every problem, as validate lists them
        problems = tuple(str(p) for p in exc.problems) or (str(exc),)
        checks.append(Check("sources", CheckStatus.FAIL, "the field rules cannot map rows", problems))
    except SyncerError as exc:
        checks.append(Check("sources", CheckStatus.FAIL, str(exc)))
    checks.extend(check_ledger(config.ledger_url.reveal()))
    checks.extend(asyncio.run(check_platform(config, names, credential_variables(config.main_file))))
    return DoctorReport(config_path, tuple(checks))
