"""What the ledger holds, for people: ``syncer status`` and ``syncer rejected``, as text or JSON.

Status: the last runs, operations in flight, lock holders and record counts per integration.
Rejected: records the API refused, invalid rows and held statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from syncer.ledger import Ledger
from syncer.ledger.lock import read_holders
from syncer.report.pieces import invalid_text, number


def _when(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite hands back naive datetimes that were written in UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def status_data(ledger: Ledger, orphans: Sequence[str] = ()) -> dict[str, Any]:
    """What ``syncer status`` shows, as JSON-ready data (``orphans``: integrations the ledger
    holds that the config no longer declares)."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for c in ledger.record_counts():
        counts.setdefault(c.integration, {}).setdefault(c.kind.value, {})[c.status.value] = c.count
    invalid = ledger.invalid_row_counts()
    held = ledger.held_counts()
    for name in [*invalid, *held]:
        counts.setdefault(name, {})
    infos = {info.name: info for info in ledger.integration_infos()}
    drift: dict[str, int] = {}
    for d in ledger.drift():
        drift[d.integration] = drift.get(d.integration, 0) + 1
    return {
        "runs": [
            {
                "id": r.id,
                "command": r.command,
                "host": r.host,
                "pid": r.pid,
                "status": r.status.value,
                "started_at": _when(r.started_at),
                "ended_at": _when(r.ended_at),
            }
            for r in ledger.last_runs()
        ],
        "in_flight": [
            {
                "id": op.id,
                "integration": op.integration,
                "type": op.type.value,
                "status": op.status.value,
                "items": op.item_count,
                "operation": op.api_id,
                "created_at": _when(op.created_at),
            }
            for op in ledger.unfinished_operations()
        ],
        "locks": [
            {"name": h.name, "host": h.host, "pid": h.pid, "since": _when(h.started_at)}
            for h in read_holders(ledger)
        ],
        "integrations": {
            name: {
                "records": kinds,
                "invalid": invalid.get(name, 0),
                "held": held.get(name, 0),
                "api_id": infos[name].api_id if name in infos else None,
                "refreshed_at": _when(infos[name].refreshed_at) if name in infos else None,
                "drift": drift.get(name, 0),
                "orphaned": name in orphans,
            }
            for name, kinds in sorted(counts.items())
        },
        "orphans": list(orphans),
    }


def render_status(ledger: Ledger, fmt: str = "text", orphans: Sequence[str] = ()) -> str:
    """``syncer status`` as text or JSON."""
    data = status_data(ledger, orphans)
    if fmt == "json":
        return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    lines = ["Integrations:"]
    for name, info in data["integrations"].items():
        parts = []
        for kind, statuses in sorted(info["records"].items()):
            inner = ", ".join(f"{status} {number(count)}" for status, count in sorted(statuses.items()))
            parts.append(f"{kind}s {inner}")
        parts.append(f"invalid {number(info['invalid'])}")
        parts.append(f"held {number(info['held'])}")
        if info["drift"]:
            parts.append(f"drift {number(info['drift'])} (last refresh {info['refreshed_at']})")
        if info["orphaned"]:
            parts.append("orphaned: no longer in the config (records kept; nothing deleted on the platform)")
        lines.append(f"  {name}: " + " | ".join(parts))
    if not data["integrations"]:
        lines.append("  none recorded yet")
    lines.append("Operations in flight:" + ("" if data["in_flight"] else " none"))
    lines.extend(
        f"  #{op['id']} {op['integration']} {op['type']} {op['status']} ({number(op['items'])} items)"
        + (f" operation {op['operation']}" if op["operation"] else "")
        for op in data["in_flight"]
    )
    lines.append("Locks:" + ("" if data["locks"] else " none held"))
    lines.extend(f"  {h['name']}: {h['host']} pid {h['pid']} since {h['since']}" for h in data["locks"])
    lines.append("Last runs:" + ("" if data["runs"] else " none"))
    lines.extend(
        f"  #{r['id']} {r['command']} {r['status']} started {r['started_at']} on {r['host']} pid {r['pid']}"
        for r in data["runs"]
    )
    return "\n".join(lines) + "\n"


def render_rejected(ledger: Ledger, fmt: str = "text", *, integration: str | None = None) -> str:
    """``syncer rejected``: records the API refused, invalid rows and held statistics, as text or JSON."""
    refused = ledger.rejected_records(integration)
    invalid = ledger.invalid_rows(integration)
    held = ledger.held_records(integration)
    counts = ledger.held_counts()
    held_total = counts.get(integration, 0) if integration is not None else sum(counts.values())
    if fmt == "json":
        data = {
            "rejected": [
                {
                    "integration": r.integration,
                    "kind": r.kind.value,
                    "key": r.key,
                    "origin": r.origin,
                    "message": r.message,
                    "updated_at": _when(r.updated_at),
                }
                for r in refused
            ],
            "invalid": [
                {
                    "integration": r.integration,
                    "kind": r.kind.value,
                    "origin": r.origin,
                    "field": r.field,
                    "reason": r.reason,
                }
                for r in invalid
            ],
            "held_total": held_total,
            "held": [
                {
                    "integration": h.integration,
                    "key": h.key,
                    "origin": h.origin,
                    "effect": h.effect.value,
                    "reason": h.reason,
                }
                for h in held
            ],
        }
        return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    lines = [f"Rejected by the API: {number(len(refused))}"]
    lines.extend(f"  {r.integration} {r.kind.value} {r.key} ({r.origin}): {r.message}" for r in refused)
    lines.append(f"Invalid rows (never sent): {number(len(invalid))}")
    lines.extend(f"  {invalid_text(r)}" for r in invalid)
    lines.append(
        "Held (not sent: the platform would refuse them, or unsafe effect on its attempts): "
        f"{number(held_total)}"
    )
    lines.extend(f"  {h.integration} stat {h.key} ({h.origin}): {h.effect.label}: {h.reason}" for h in held)
    if held_total > len(held):
        lines.append(
            f"  and {number(held_total - len(held))} more (the first {number(len(held))} are listed)"
        )
    return "\n".join(lines) + "\n"
