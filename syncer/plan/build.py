"""Building a plan: desired records vs the ledger -> a Plan, computed in the database, not in Python memory.

The steps, each in its own module: the streams of every selected integration (``build_plan``,
syncer/plan/streams.py); a file's rows looked up in the ledger by digest, so that unchanged
ones are not mapped (skim.py); the rest mapped and staged in a temporary table of the ledger
database (stage.py, tables.py); duplicates resolved there and the comparison with the ledger's
``records`` as one join (compare.py); attempts predicted (attempts.py); counts and capped detail
read back (summary.py) into a Plan (plan.py). Plan files: syncer/plan/saved.py.
"""

from __future__ import annotations

import ctypes
import uuid
from collections.abc import Iterable, Mapping, Sequence
from functools import partial

from sqlalchemy import Index
from sqlalchemy.engine import Connection

from syncer.config import BatchSizes, Config, SourceKind, UnsafeChange
from syncer.errors import PlanError
from syncer.ledger import Ledger
from syncer.ledger.identity import orphaned_integrations, settle_renames
from syncer.models import RecordKind, UnsafeStat
from syncer.plan.attempts import Preflight, predict
from syncer.plan.compare import classify, resolve_duplicates
from syncer.plan.plan import Plan
from syncer.plan.query import QueryStream, in_ledger
from syncer.plan.reads import Read, decide_reads
from syncer.plan.skim import Skim, settle_duplicates, skim_file
from syncer.plan.stage import Desired, Inserter, stage_all, stage_archives, stage_items
from syncer.plan.streams import FileStream, stage_runs
from syncer.plan.summary import (
    DETAIL_LIMIT,
    all_invalid,
    details,
    invalid_detail,
    summarise,
    tolerated_by_integration,
)
from syncer.plan.tables import INVALID, OK, Tally, analyze, end_sorts, sort_threads, staging_tables
from syncer.progress import NullProgress, Progress

__all__ = ["build_plan", "plan_records", "select_integrations"]


def build_plan(
    config: Config,
    ledger: Ledger,
    *,
    integrations: Sequence[str] | None = None,
    retry_rejected: bool = False,
    detail_limit: int = DETAIL_LIMIT,
    progress: Progress | None = None,
    full: bool = False,
    reads: Mapping[tuple[str, RecordKind], Read] | None = None,
) -> Plan:
    """Map every selected integration's sources and compare them with the ledger (``progress``:
    a counter of rows per source read, then the comparison).

    Incremental SQL sources read the rows ``decide_reads`` chooses (syncer/plan/reads.py): every
    row with ``full``, else those past the recorded cursor; ``reads``: a plan file's, kept as is.
    """
    names = select_integrations(config, integrations)
    renamed = settle_renames(config, ledger, names)
    chosen = decide_reads(config, ledger, names, full=full, retry_rejected=retry_rejected, given=reads)
    desired: list[Desired] = []
    for name in names:
        integration = config.integrations[name]
        for kind, spec in ((RecordKind.COURSE, integration.courses), (RecordKind.STAT, integration.stats)):
            if spec is None:
                continue
            source = config.sources[spec.source]
            read = chosen.get((name, kind))
            incremental = read is not None and not read.full
            if read is not None:
                source = read.on(source)
            by_digest = source.kind is not SourceKind.SQL
            # A query on the ledger's own database: digested and looked up on the server. An
            # incremental read is small: it is mapped the ordinary way.
            on_server = not incremental and in_ledger(source, config.ledger_url.reveal())
            stream = QueryStream(integration, kind, spec, source) if on_server else None
            desired.append(
                Desired(
                    name,
                    kind,
                    () if by_digest or on_server else stage_runs(integration, kind, spec, source),
                    # Rows an incremental read did not read are not gone: only full reads archive.
                    archive_missing=spec.archive_missing and kind is RecordKind.COURSE and not incremental,
                    tolerance=spec.tolerate_invalid,
                    send_unsafe=kind is RecordKind.STAT and spec.on_unsafe_change is UnsafeChange.SEND,
                    file=FileStream(integration, kind, spec, source) if by_digest else stream,
                    source=source.name,
                    incremental=incremental,
                )
            )
    refreshed = {info.name for info in ledger.integration_infos() if info.refreshed_at is not None}
    preflight = Preflight(
        courses=frozenset(
            name for name in names if config.integrations[name].courses is not None or name in refreshed
        ),
        learners=ledger.users_listed_at() is not None,
    )
    plan = plan_records(
        ledger,
        desired,
        integrations=names,
        batch_sizes=config.api.batch_size,
        retry_rejected=retry_rejected,
        detail_limit=detail_limit,
        preflight=preflight,
        progress=progress,
    )
    plan.renamed = renamed
    plan.reads = tuple(chosen.values())
    plan.orphans = tuple(orphaned_integrations(config, ledger))
    plan.drift = tuple(ledger.drift(names))
    return plan


def select_integrations(config: Config, wanted: Sequence[str] | None) -> list[str]:
    """The integrations to plan: all of them, or those named (unknown names are a ConfigError)."""
    return config.select(wanted)


def plan_records(
    ledger: Ledger,
    desired: Iterable[Desired],
    *,
    integrations: Sequence[str] | None = None,
    batch_sizes: BatchSizes | None = None,
    retry_rejected: bool = False,
    detail_limit: int = DETAIL_LIMIT,
    preflight: Preflight | None = None,
    progress: Progress | None = None,
) -> Plan:
    """Stage the desired records, resolve duplicates and compare with the ledger in SQL."""
    progress = progress or NullProgress()
    desired = list(desired)
    names = list(integrations) if integrations is not None else []
    for d in desired:
        if d.integration not in names:
            names.append(d.integration)
    plan_id = uuid.uuid4().hex
    staged, actions = staging_tables(plan_id)
    generations = ledger.generations(names)
    with ledger.translate_errors("planning"):
        conn = ledger.engine.connect()
    try:
        with ledger.translate_errors("planning"):
            sort_threads(conn)
            staged.metadata.create_all(conn)
            conn.commit()
        tally: Tally = {}
        skims: dict[tuple[str, RecordKind], Skim] = {}
        with ledger.translate_errors("staging records"):
            insert = Inserter(conn, staged)
        valid = _stage(ledger, conn, insert, desired, tally, skims, plan_id, progress)
        comparing = progress.task("comparing with the ledger")
        with ledger.translate_errors("planning"):
            # Covering for the ledger join: read in key order, the probes into the ledger's
            # (integration, kind, key) index go forward instead of jumping around. Built after
            # staging: kept up while inserting (in random key order) it costs twice as much.
            Index(
                None,
                staged.c.integration,
                staged.c.kind,
                staged.c.key,
                staged.c.state,
                staged.c.hash,
                staged.c.digest,
                staged.c.grp,
            ).create(conn)
            analyze(conn, staged)
        with ledger.translate_errors("planning"):
            resolve_duplicates(conn, staged, tally)
            for number, d in enumerate(desired):
                if d.kind is RecordKind.COURSE and d.archive_missing and valid[(d.integration, d.kind)]:
                    courses = skims.get((d.integration, d.kind))
                    table = courses.table if courses else None
                    stage_archives(conn, staged, number, d.integration, retry_rejected, tally, table)
        for _attempt in range(3):
            with ledger.translate_errors("planning"):
                if not classify(conn, staged, actions, retry_rejected, skims.values()):
                    break
            for skim in skims.values():
                settle_duplicates(ledger, conn, insert, staged, actions, skim, tally, valid)
            with ledger.translate_errors("planning"):
                conn.execute(actions.delete())
                resolve_duplicates(conn, staged, tally)
        else:  # pragma: no cover - each round maps every row a duplicate key involves
            raise PlanError("duplicate keys across unchanged and changed rows could not be resolved")
        with ledger.translate_errors("predicting attempts"):
            analyze(conn, actions)  # PostgreSQL: the prediction joins it (unanalyzed: nested loops)
            send_unsafe = {d.integration for d in desired if d.kind is RecordKind.STAT and d.send_unsafe}
            prediction = predict(conn, staged, actions, plan_id, send_unsafe, preflight or Preflight())
        with ledger.translate_errors("planning"):
            analyze(conn, actions)
            conn.commit()
            warnings = _empty_sources(desired, valid, tally)
            summaries = [
                summarise(
                    conn, staged, actions, name, batch_sizes or BatchSizes(), tally, warnings.get(name, ())
                )
                for name in names
            ]
            # Ids follow the plan's streams unless one was staged again: then sort by stream too.
            restaged = any(skim.restaged for skim in skims.values())
            changes = details(conn, staged, actions, summaries, detail_limit, restaged)
            invalid_total = sum(n for (_i, _k, state), n in tally.items() if state != OK)
            invalid = invalid_detail(conn, staged, detail_limit, restaged) if invalid_total else []
            tolerated = tolerated_by_integration(desired, valid, tally)
            unsafe: list[UnsafeStat] = []
            if prediction.unsafe:
                for stat in prediction.unsafe_stats(conn, staged):
                    if len(unsafe) >= detail_limit:
                        break
                    unsafe.append(stat)
            unmapped: dict[str, int] = {}
            for skim in skims.values():
                name = skim.desired.integration
                mapped = skim.total if skim.selected is None else len(skim.selected)
                unmapped[name] = unmapped.get(name, 0) + skim.total - mapped
        # Without invalid rows there is nothing to read: skip a scan of the whole staging table.
        ledger.replace_invalid_rows(
            names, all_invalid(ledger, conn, staged, restaged) if invalid_total else iter(())
        )
        ledger.replace_held_records(
            names, prediction.unsafe_stats(conn, staged, held=True) if prediction.held else iter(())
        )
        with ledger.translate_errors("planning"):
            conn.rollback()  # end the read transaction: the plan must not pin an old snapshot
            end_sorts(conn)  # back to the default cache while apply runs
        _give_back_memory()
        progress.done(comparing)
    except BaseException:
        conn.invalidate()  # its temporary tables go with it
        conn.close()
        raise
    return Plan(
        ledger=ledger,
        conn=conn,
        staged=staged,
        actions=actions,
        plan_id=plan_id,
        generation=sum(generations.values()),
        generations=generations,
        summaries=summaries,
        changes=changes,
        invalid_rows=invalid,
        invalid_total=invalid_total,
        batch_sizes=batch_sizes or BatchSizes(),
        retry_rejected=retry_rejected,
        tolerance=tolerated,
        unmapped=unmapped,
        unsafe=unsafe,
        unsafe_total=prediction.unsafe,
        held_total=prediction.held,
        prediction=prediction,
    )


def _empty_sources(
    desired: Sequence[Desired], valid: dict[tuple[str, RecordKind], int], tally: Tally
) -> dict[str, list[str]]:
    """Per integration: a warning for each stream that gave no row at all (valid or invalid).

    An empty source is never taken for "every course is gone": ``archive_missing`` archives
    nothing from it (above). Say so, since a truncated export looks exactly like this.
    """
    out: dict[str, list[str]] = {}
    for d in desired:
        if valid.get((d.integration, d.kind), 0) or tally.get((d.integration, d.kind.value, INVALID), 0):
            continue
        if d.incremental:
            continue  # no row changed since the cursor: the plan's read line says so
        what = "courses" if d.kind is RecordKind.COURSE else "statistics"
        source = f"source {d.source!r}" if d.source else "the source"
        message = f"{d.integration}: {source} gave no {what} (empty, header only, or every row filtered out)"
        if d.archive_missing:
            message += "; nothing is archived (archive_missing never archives from an empty source)"
        out.setdefault(d.integration, []).append(message)
    return out


def _stage(
    ledger: Ledger,
    conn: Connection,
    insert: Inserter,
    desired: Sequence[Desired],
    tally: Tally,
    skims: dict[tuple[str, RecordKind], Skim],
    plan_id: str,
    progress: Progress,
) -> dict[tuple[str, RecordKind], int]:
    """Fill the staging table from the mapping streams; count valid records per stream.

    A file stream is read by digest first (``skim_file``): the rows whose digest the ledger knows as
    synced count as valid and unchanged without being mapped or staged.
    """
    valid: dict[tuple[str, RecordKind], int] = {}
    for number, d in enumerate(desired):
        name, kind = d.integration, d.kind.value
        what = "courses" if d.kind is RecordKind.COURSE else "statistics"
        source = repr(d.source) if d.source else "the source"
        reading = progress.task(f"reading {source} ({name} {what})", unit="rows")
        insert.seen = partial(progress.advance, reading)  # rows mapped, as they are staged
        skipped = 0
        if d.file is None:
            count, invalid = stage_items(ledger, insert, number, name, kind, d.items)
        else:
            skim = skim_file(ledger, conn, d, number, f"syncer_src_{plan_id[:12]}_{number}")
            if skim is None:  # the file cannot be cut into records: map all of it
                count, invalid = stage_items(ledger, insert, number, name, kind, d.file.classic())
            elif skim.selected is None:  # nothing to skip: map every row, each with its digest
                count, invalid = stage_all(ledger, conn, insert, number, d)
            else:
                skims[(name, d.kind)] = skim
                count, invalid = stage_items(ledger, insert, number, name, kind, d.file.runs(skim.selected))
                skim.staged = (count, invalid)
                skipped = skim.total - len(skim.selected)
        valid[(name, d.kind)] = valid.get((name, d.kind), 0) + count + skipped
        tally[(name, kind, OK)] = tally.get((name, kind, OK), 0) + count + skipped
        tally[(name, kind, INVALID)] = tally.get((name, kind, INVALID), 0) + invalid
        insert.seen = None
        progress.advance(reading, invalid + skipped)  # invalid rows, and rows known unchanged
        progress.done(reading)
    return valid


def _give_back_memory() -> None:
    """Return to the system the memory the plan freed (glibc only; elsewhere a no-op).

    Mapping a million rows leaves tens of megabytes free in malloc's heaps but still resident;
    ``apply`` then allocates its batches and results on top of it. ``malloc_trim`` gives the
    free pages back, so the apply's peak is its own working set plus what the plan keeps.
    """
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
