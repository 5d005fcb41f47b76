"""The platform side of each integration: its API id checked, or found or created, then kept.

Run once per integration before its batches are sent (``apply.run``); a declared integration's
settings are patched when the config changed them. The id found is written to the ledger.
"""

from __future__ import annotations

import re
from typing import Any

from syncer.api.client import ApiClient
from syncer.config import IntegrationConfig
from syncer.errors import ConfigError
from syncer.ledger import Ledger
from syncer.progress import event

_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")
_SETTINGS = (
    "defaultProgress",
    "defaultCompletion",
    "noGroupPropagation",
    "externalPlatformLogoUrl",
    "externalPlatformUnicolorLogoUrl",
)


async def resolve_integration(client: ApiClient, ledger: Ledger, spec: IntegrationConfig) -> str:
    """The API id of an integration: checked when given, else found or created, then kept."""
    if spec.id is not None:
        known = {str(i.get("_id")) for i in await client.fetch_integrations()}
        if spec.id not in known:
            # A config problem, not an API failure: rerunning cannot help (exit 1, not 4).
            where = f"{spec.where}: " if spec.where else ""
            raise ConfigError(
                f"{where}integration {spec.name}: id {spec.id} does not exist on the platform "
                "(check `id` in the config, or declare the integration with platform, group and author)"
            )
        ledger.record_integration(spec.name, spec.id)
        return spec.id
    assert spec.platform and spec.group and spec.author  # guaranteed by config validation
    wanted: dict[str, Any] = {
        "externalPlatform": spec.platform,
        "groupId": spec.group,
        "authorId": spec.author,
    }
    wanted.update({k: v for k, v in spec.settings.items() if k in _SETTINGS})
    # ObjectIds are hex: a group written in capitals in the config is the same group.
    group = spec.group.lower()
    found = [
        i
        for i in await client.fetch_integrations(spec.platform)
        if str(i.get("groupId", "")).lower() == group
    ]
    if found:
        current = found[0]
        api_id = str(current["_id"])
        differs = {k: v for k, v in wanted.items() if not _same(current.get(k), v)}
        if differs:
            await client.patch_integration(api_id, differs)
            event(f"integration {spec.name}: updated {', '.join(sorted(differs))}", integration=spec.name)
    else:
        created = await client.create_integration(wanted)
        api_id = str(created["_id"])
        event(f"integration {spec.name}: created {api_id}", integration=spec.name)
    ledger.record_integration(spec.name, api_id, platform=spec.platform, group_id=spec.group)
    return api_id


def _same(current: Any, wanted: Any) -> bool:
    """True when a platform value is the config's (ObjectIds compare without case)."""
    if isinstance(current, str) and isinstance(wanted, str):
        return current.lower() == wanted.lower() if _OBJECT_ID.match(wanted) else current == wanted
    return bool(current == wanted)
