"""What the platform holds, as a refresh read it back: the ledger's side of syncer/refresh.

``LedgerPlatform`` adds to the ledger's writes those of a refresh (platform courses, learners,
foreign attempts, drift, adopted records) and of integration identity (a renamed key, an
integration recreated on the platform), with the reads that go with them. An integration's
identity is its platform ``_id``; its YAML key is a name (docs/refresh.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, exists, insert, select, update

from syncer.ledger.schema import (
    drift_table,
    foreign_attempts_table,
    held_records_table,
    integrations_table,
    invalid_rows_table,
    ledger_state,
    operations,
    platform_courses_table,
    platform_users_table,
    records,
    source_cursors_table,
)
from syncer.ledger.writes import LedgerWrites, _now, _upsert, bump_generations
from syncer.models import RecordKind, RecordStatus

__all__ = ["DriftInfo", "IntegrationInfo", "LedgerPlatform"]

_CHUNK = 2000
# Tables whose rows belong to one integration by its name.
_BY_NAME: tuple[Table, ...] = (
    records,
    operations,
    invalid_rows_table,
    held_records_table,
    platform_courses_table,
    foreign_attempts_table,
    drift_table,
    source_cursors_table,
)


@dataclass(frozen=True, slots=True)
class IntegrationInfo:
    """An integration as the ledger knows it: name, platform id, platform name and group."""

    name: str
    api_id: str | None
    platform: str | None
    group_id: str | None
    refreshed_at: datetime | None
    has_records: bool


@dataclass(frozen=True, slots=True)
class DriftInfo:
    """One difference the last refresh found between the ledger and the platform."""

    integration: str
    kind: str
    key: str
    what: str
    old: str | None
    new: str | None
    restore: bool


class LedgerPlatform(LedgerWrites):
    """Writes and reads of the platform's state as refreshed, and of integration identity."""

    # -- identity ----------------------------------------------------------------------------

    def integration_infos(self) -> list[IntegrationInfo]:
        """Every integration the ledger knows (by name), and whether it holds records.

        One index probe per integration (the unique (integration, kind, key) index), not a count:
        plans and applies ask this on every run, whatever the size of the ledger.
        """
        i = integrations_table.c
        holds = exists().where(records.c.integration == i.name)
        with self.translate_errors("reading integrations"), self._engine.connect() as conn:
            rows = conn.execute(
                select(i.name, i.api_id, i.platform, i.group_id, i.refreshed_at, holds).order_by(i.name)
            )
            return [IntegrationInfo(n, a, p, g, r, bool(h)) for n, a, p, g, r, h in rows]

    def record_integration(
        self, name: str, api_id: str, *, platform: str | None = None, group_id: str | None = None
    ) -> None:
        """Record an integration's platform id, and its platform name and group when known."""
        values: dict[str, Any] = {"api_id": api_id}
        if platform is not None:
            values["platform"] = platform
        if group_id is not None:
            values["group_id"] = group_id
        with self.translate_errors("recording an integration"), self._engine.begin() as conn:
            stmt = _upsert(self.dialect, integrations_table).values(name=name, **values)
            conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=values))

    def rename_integration(self, old: str, new: str) -> None:
        """Move everything recorded under ``old`` to ``new`` (a renamed key: nothing is resent)."""
        with self._write("renaming an integration", old, new) as conn:
            conn.execute(delete(integrations_table).where(integrations_table.c.name == new))
            for table in (*_BY_NAME, integrations_table):
                column = table.c.name if table is integrations_table else table.c.integration
                conn.execute(update(table).where(column == old).values({column.name: new}))

    def forget_integration(self, name: str) -> int:
        """Forget what was sent for an integration whose platform ``_id`` changed; return how many
        records. Its records are unsent for the new ``_id`` (courses imported again, then statistics);
        its operations stay as history."""
        with self._write("forgetting an integration's records", name) as conn:
            count = conn.execute(delete(records).where(records.c.integration == name)).rowcount
            for table in (platform_courses_table, foreign_attempts_table, held_records_table):
                conn.execute(delete(table).where(table.c.integration == name))
            return int(count or 0)

    def mark_refreshed(self, name: str) -> None:
        """Note when the platform was last read back for an integration."""
        with self.translate_errors("recording a refresh"), self._engine.begin() as conn:
            conn.execute(
                update(integrations_table)
                .where(integrations_table.c.name == name)
                .values(refreshed_at=_now())
            )

    # -- what the platform holds -----------------------------------------------------------------

    def replace_platform_courses(self, name: str, courses: Iterable[tuple[str, str | None, str]]) -> None:
        """The integration's external courses as found: (externalId, course id or None, status)."""
        now = _now()
        rows = [
            {"integration": name, "external_id": e, "course_id": c, "status": s, "seen_at": now}
            for e, c, s in courses
        ]
        with self.translate_errors("recording platform courses"), self._engine.begin() as conn:
            conn.execute(delete(platform_courses_table).where(platform_courses_table.c.integration == name))
            for start in range(0, len(rows), _CHUNK):
                conn.execute(insert(platform_courses_table), rows[start : start + _CHUNK])

    def record_users(self, users: Iterable[tuple[str, str | None, str]]) -> int:
        """Learners read from the platform: (id, e-mail, status), one page at a time. Returns how many."""
        now = _now()
        rows = [
            {"user_id": u.lower(), "mail": m.strip().lower() if m else None, "status": s, "seen_at": now}
            for u, m, s in users
        ]
        if not rows:
            return 0
        t = platform_users_table
        with self.translate_errors("recording learners"), self._engine.begin() as conn:
            stmt = _upsert(self.dialect, t)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["user_id"],
                    set_={"mail": stmt.excluded.mail, "status": stmt.excluded.status, "seen_at": now},
                ),
                rows,
            )
        return len(rows)

    def finish_user_listing(self, started: datetime) -> None:
        """Every learner was listed since ``started``: those not seen are gone, and the plan's
        learner check is on from now (``users_listed_at``)."""
        t = platform_users_table
        with self.translate_errors("recording learners"), self._engine.begin() as conn:
            conn.execute(delete(t).where(t.c.seen_at < started))
            conn.execute(update(ledger_state).values(users_listed_at=_now()))

    @staticmethod
    def now() -> datetime:
        """The time as the ledger records it (for ``finish_user_listing``)."""
        return _now()

    def users_listed_at(self) -> datetime | None:
        """When the platform's learners were last listed (None: never; the learner check is off)."""
        with self.translate_errors("reading the ledger state"), self._engine.connect() as conn:
            return conn.execute(select(ledger_state.c.users_listed_at)).scalar_one_or_none()

    def replace_foreign_attempts(self, name: str, attempts: Iterable[Mapping[str, Any]]) -> int:
        """The attempts of the integration's pairs that no statistic of syncer's made."""
        t = foreign_attempts_table
        count = 0
        with self.translate_errors("recording foreign attempts"), self._engine.begin() as conn:
            conn.execute(delete(t).where(t.c.integration == name))
            chunk: list[dict[str, Any]] = []
            for attempt in attempts:
                chunk.append({"integration": name, **attempt})
                if len(chunk) >= _CHUNK:
                    conn.execute(insert(t), chunk)
                    count += len(chunk)
                    chunk = []
            if chunk:
                conn.execute(insert(t), chunk)
                count += len(chunk)
        return count

    def replace_drift(self, name: str, drift: Sequence[DriftInfo]) -> None:
        """What the last refresh of an integration found different from the ledger."""
        now = _now()
        rows = [{**asdict(d), "integration": name, "created_at": now} for d in drift]
        with self.translate_errors("recording drift"), self._engine.begin() as conn:
            conn.execute(delete(drift_table).where(drift_table.c.integration == name))
            for start in range(0, len(rows), _CHUNK):
                conn.execute(insert(drift_table), rows[start : start + _CHUNK])

    def clear_restored_drift(self, name: str) -> None:
        """Forget the drift an apply put right (what it restores); reported drift stays."""
        with self.translate_errors("recording drift"), self._engine.begin() as conn:
            conn.execute(
                delete(drift_table).where(drift_table.c.integration == name, drift_table.c.restore.is_(True))
            )

    def drift(self, integrations: Iterable[str] | None = None) -> list[DriftInfo]:
        """The drift the last refresh of each integration found, in integration and key order."""
        t = drift_table.c
        query = select(t.integration, t.kind, t.key, t.what, t.old, t.new, t.restore).order_by(
            t.integration, t.kind, t.key
        )
        if integrations is not None:
            query = query.where(t.integration.in_(list(integrations)))
        with self.translate_errors("reading drift"), self._engine.connect() as conn:
            return [DriftInfo(*row) for row in conn.execute(query)]

    # -- records the platform already holds ------------------------------------------------------

    def adopt_records(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Record as synced what the platform already holds (no operation carried them).

        Each row: integration, kind, key, hash, payload, origin, live, source_digest and, for a
        statistic, grp, first_at, att_end, att_done. Returns how many.
        """
        now = _now()
        count = 0
        with self._write("adopting records") as conn:
            chunk: list[dict[str, Any]] = []
            names: set[str] = set()
            for row in rows:
                names.add(row["integration"])
                chunk.append(
                    {
                        "status": RecordStatus.SYNCED,
                        "last_operation_id": None,
                        "message": None,
                        "created_at": now,
                        "updated_at": now,
                        "grp": None,
                        "first_at": None,
                        "att_end": None,
                        "att_done": None,
                        **row,
                    }
                )
                if len(chunk) >= _CHUNK:
                    count += self._adopt(conn, chunk)
                    chunk = []
            if chunk:
                count += self._adopt(conn, chunk)
            bump_generations(conn, names)
        return count

    def _adopt(self, conn: Any, chunk: list[dict[str, Any]]) -> int:
        stmt = _upsert(self.dialect, records)
        columns = (
            "hash", "payload", "status", "live", "last_operation_id", "message", "origin",
            "source_digest", "grp", "first_at", "att_end", "att_done", "updated_at",
        )  # fmt: skip
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["integration", "kind", "key"],
                set_={c: getattr(stmt.excluded, c) for c in columns},
            ),
            chunk,
        )
        return len(chunk)

    def restore_courses(self, name: str, *, reimport: Sequence[str] = (), resend: Sequence[str] = ()) -> None:
        """Make the next plan restore courses the platform lost or changed.

        ``reimport``: archived or missing on the platform (the plan imports them anew);
        ``resend``: edited on the platform (the plan sends the source's content again).
        """
        target = (
            records.c.integration == name,
            records.c.kind == RecordKind.COURSE,
            records.c.key == bindparam("k"),
        )
        with self._write("recording drift to restore", name) as conn:
            if reimport:
                conn.execute(
                    update(records).where(*target).values(live=False, source_digest=None),
                    [{"k": k} for k in reimport],
                )
            if resend:
                conn.execute(
                    update(records).where(*target).values(hash="drift", source_digest=None),
                    [{"k": k} for k in resend],
                )
            if not reimport and not resend:
                conn.rollback()
