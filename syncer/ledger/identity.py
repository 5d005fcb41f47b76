"""An integration's identity is its platform ``_id``; its YAML key is a name (docs/refresh.md).

A key renamed in the config is recognised without calling the API, from what the ledger kept of
the integration (its ``id``, or platform name and group), and its records move to the new name:
nothing is resent. An integration the ledger holds records of that the config no longer declares
is orphaned: reported by ``plan`` and ``status``; nothing is deleted, here or on the platform.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from syncer.config import Config, IntegrationConfig
from syncer.ledger.store import Ledger
from syncer.progress import event

__all__ = ["orphaned_integrations", "settle_renames"]


def settle_renames(config: Config, ledger: Ledger, names: Sequence[str]) -> dict[str, str]:
    """Move the records of integrations renamed in the config to their new name; new -> old.

    An integration of the config without records is the renamed one of an integration the ledger
    knows under a name the config no longer has, when exactly one such has the same ``id``, or
    the same platform name and group (a ledger from before groups were kept: the same platform).
    Ledger bookkeeping only: nothing is sent, nothing is resent.
    """
    infos = {info.name: info for info in ledger.integration_infos()}
    orphans = [info for info in infos.values() if info.name not in config.integrations and info.has_records]
    moved: dict[str, str] = {}
    for name in names:
        mine = infos.get(name)
        if mine is not None and mine.has_records:
            continue
        spec = config.integrations[name]
        same = [info for info in orphans if info.name not in moved.values() and _same(spec, info)]
        if len(same) == 1:
            old = same[0].name
            ledger.rename_integration(old, name)
            moved[name] = old
            event(
                f"integration {name}: renamed from {old} in the config; its records are kept",
                integration=name,
            )
    return moved


def _same(spec: IntegrationConfig, info: Any) -> bool:
    if spec.id is not None:
        return bool(info.api_id) and str(info.api_id).lower() == spec.id.lower()
    if info.platform is None or info.platform != spec.platform:
        return False
    return info.group_id is None or str(info.group_id).lower() == str(spec.group).lower()


def orphaned_integrations(config: Config, ledger: Ledger) -> list[str]:
    """Integrations the ledger holds records for that the config no longer declares."""
    return [
        info.name
        for info in ledger.integration_infos()
        if info.has_records and info.name not in config.integrations
    ]
