"""What the ledger holds, for people: ``syncer status`` and ``syncer rejected``, as text or JSON.

Status: the last runs (how each ended: exit code, counts, error; ``died`` when its process is
gone, decided at read time from the lock holders), operations in flight, lock holders (heartbeat,
alive) and record counts per integration (archived courses apart from synced ones).
Rejected: records the API refused, invalid rows and held statistics.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from syncer.ledger import Ledger, RunInfo, RunStatus
from syncer.ledger.lock import Holder, holder_alive, pid_alive, read_holders
from syncer.report.pieces import invalid_text, key_text, number
from syncer.sources.incremental import shown

DIED = "died"
"""The status ``syncer status`` shows for a run recorded as running whose process is gone."""


def _when(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite hands back naive datetimes that were written in UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _run_status(run: RunInfo, holders: Sequence[Holder], alive: Mapping[str, bool], here: str) -> str:
    """The run's status, ``died`` for a run recorded as running whose process is gone."""
    if run.status is not RunStatus.RUNNING:
        return run.status.value
    # A run's lock holder rows carry its host and pid (the CLI takes the lock before the run starts).
    own = [h for h in holders if (h.host, h.pid) == (run.host, run.pid)]
    if any(alive[h.name] for h in own):
        return run.status.value
    if not own and run.host == here and pid_alive(run.pid):
        return run.status.value  # a run of the library that took no lock: its process is there
    return DIED


def _run_counts(summary: Mapping[str, Any] | None) -> dict[str, int]:
    """The numbers of a run's summary, those of an apply's integrations added up."""
    counts: dict[str, int] = {}
    per_integration = (summary or {}).get("integrations")
    if isinstance(per_integration, Mapping):
        for numbers in per_integration.values():
            for key, value in numbers.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    counts[key] = counts.get(key, 0) + value
    for key, value in (summary or {}).items():
        if isinstance(value, int) and not isinstance(value, bool):
            counts[key] = value
    return counts


def _record_statuses(ledger: Ledger) -> dict[str, dict[str, dict[str, int]]]:
    """Records per integration, kind and status; archived courses apart from synced ones."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for c in ledger.record_counts():
        statuses = counts.setdefault(c.integration, {}).setdefault(c.kind.value, {})
        if c.count - c.archived:
            statuses[c.status.value] = c.count - c.archived
        if c.archived:
            statuses["archived"] = c.archived
    return counts


def status_data(ledger: Ledger, orphans: Sequence[str] = ()) -> dict[str, Any]:
    """What ``syncer status`` shows, as JSON-ready data (``orphans``: integrations the ledger
    holds that the config no longer declares)."""
    counts = _record_statuses(ledger)
    invalid = ledger.invalid_row_counts()
    held = ledger.held_counts()
    for name in [*invalid, *held]:
        counts.setdefault(name, {})
    infos = {info.name: info for info in ledger.integration_infos()}
    drift: dict[str, int] = {}
    for d in ledger.drift():
        drift[d.integration] = drift.get(d.integration, 0) + 1
    holders = read_holders(ledger)
    alive = {h.name: holder_alive(ledger, h) for h in holders}
    here = socket.gethostname()
    now = datetime.now(UTC)
    return {
        "runs": [
            {
                "id": r.id,
                "command": r.command,
                "host": r.host,
                "pid": r.pid,
                "status": _run_status(r, holders, alive, here),
                "started_at": _when(r.started_at),
                "ended_at": _when(r.ended_at),
                "exit_code": r.exit_code,
                "error": r.error,
                "counts": _run_counts(r.summary),
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
            {
                "name": h.name,
                "host": h.host,
                "pid": h.pid,
                "since": _when(h.started_at),
                "heartbeat_at": _when(h.heartbeat_at),
                "heartbeat_age_seconds": max(0, int((now - h.heartbeat_at).total_seconds())),
                "alive": alive[h.name],
            }
            for h in holders
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
        "cursors": [
            {
                "integration": c.integration,
                "kind": c.kind,
                "source": c.source,
                "value": None if c.value is None else shown(c.value),
                "full_read_at": _when(c.full_read_at),
                "moved_at": _when(c.moved_at),
                "full_due": c.full_due,
            }
            for c in ledger.cursors()
        ],
    }


def _cursor_text(cursor: Mapping[str, Any]) -> str:
    full = f", last full read {cursor['full_read_at']}" if cursor["full_read_at"] else ""
    # A full read that began sending and did not end: the next read is a full one (whatever value).
    start = (
        "next read in full (the last full read did not end)"
        if cursor["full_due"]
        else f"next read from {cursor['value'] or '(the start)'} less the overlap"
    )
    return (
        f"  {cursor['integration']} {cursor['kind']}s from {cursor['source']!r}: {start} "
        f"(recorded {cursor['moved_at']}{full})"
    )


def _lock_text(lock: Mapping[str, Any]) -> str:
    state = "alive" if lock["alive"] else "dead: its run is gone (`syncer unlock CONFIG` clears the row)"
    return (
        f"  {lock['name']}: {lock['host']} pid {lock['pid']} since {lock['since']}, "
        f"heartbeat {lock['heartbeat_at']} ({number(lock['heartbeat_age_seconds'])} s ago): {state}"
    )


def _run_text(run: Mapping[str, Any]) -> str:
    line = f"  #{run['id']} {run['command']} {run['status']}"
    if run["exit_code"] is not None:
        line += f" (exit {run['exit_code']})"
    line += f" started {run['started_at']} on {run['host']} pid {run['pid']}"
    if run["status"] == DIED:
        line += ": its process is gone, killed or crashed; the next run resumes what it left in flight"
    numbers = [f"{key.replace('_', ' ')} {number(v)}" for key, v in run["counts"].items() if v]
    if numbers:
        line += " | " + ", ".join(numbers)
    if run["error"]:
        line += f" | error: {run['error']}"
    return line


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
    if data["cursors"]:
        lines.append("Incremental sources (docs/incremental.md):")
        lines.extend(_cursor_text(c) for c in data["cursors"])
    lines.append("Operations in flight:" + ("" if data["in_flight"] else " none"))
    lines.extend(
        f"  #{op['id']} {op['integration']} {op['type']} {op['status']} ({number(op['items'])} items)"
        + (f" operation {op['operation']}" if op["operation"] else "")
        for op in data["in_flight"]
    )
    lines.append("Locks:" + ("" if data["locks"] else " none held"))
    lines.extend(_lock_text(h) for h in data["locks"])
    lines.append("Last runs:" + ("" if data["runs"] else " none"))
    lines.extend(_run_text(r) for r in data["runs"])
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
                    "display_key": key_text(r.kind, r.key),
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
                    "display_key": key_text("stat", h.key),
                    "origin": h.origin,
                    "effect": h.effect.value,
                    "reason": h.reason,
                }
                for h in held
            ],
        }
        return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    lines = [f"Rejected by the API: {number(len(refused))}"]
    lines.extend(
        f"  {r.integration} {r.kind.value} {key_text(r.kind, r.key)} ({r.origin}): {r.message}"
        for r in refused
    )
    lines.append(f"Invalid rows (never sent): {number(len(invalid))}")
    lines.extend(f"  {invalid_text(r)}" for r in invalid)
    lines.append(
        "Held (not sent: the platform would refuse them, or unsafe effect on its attempts): "
        f"{number(held_total)}"
    )
    lines.extend(
        f"  {h.integration} stat {key_text('stat', h.key)} ({h.origin}): {h.effect.label}: {h.reason}"
        for h in held
    )
    if held_total > len(held):
        lines.append(
            f"  and {number(held_total - len(held))} more (the first {number(len(held))} are listed)"
        )
    return "\n".join(lines) + "\n"
