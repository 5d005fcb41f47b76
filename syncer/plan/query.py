"""An SQL source in the ledger's own PostgreSQL database, read by digest, on the server.

When a source's query runs in the very database of the ledger (the same URL), every row's digest
is computed by the server (``hashtextextended`` of the row's text, keyed by what its mapping
depends on) straight into the skim's table of digests; the lookup in the ledger is the same join
as for a file (syncer/plan/skim.py). Only the rows the ledger does not know as synced then
cross the wire to be mapped, fetched by their position in the query's result. A plan with
nothing changed reads no row of the source at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy import Table, create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from syncer.config import IntegrationConfig, ObjectConfig, SourceConfig, SourceKind
from syncer.errors import SourceError
from syncer.mapping import build_mapper
from syncer.models import RecordKind
from syncer.plan.streams import Run, Selection, SourceRow, _classic_runs, _staged_runs
from syncer.sources import SQL_BATCH_ROWS
from syncer.sources.digest import Unscannable, seed
from syncer.sources.readers import statement

__all__ = ["QueryStream", "in_ledger"]

_ROW = "syncer_q"
_DIGEST = f"hashtextextended(CAST({_ROW} AS text), CAST(:syncer_key AS bigint))"
# The row's text must say every value exactly: floats with all their digits (the default of
# PostgreSQL 12+, but a database may lower it). Rows must come in the same order in every read
# of the query (their position is their ordinal): no parallel scan, no scan joining another
# one midway through a big table.
_STEADY = (
    "SET LOCAL extra_float_digits = 3",
    "SET LOCAL max_parallel_workers_per_gather = 0",
    "SET LOCAL synchronize_seqscans = off",
)


def in_ledger(source: SourceConfig, ledger_url: str) -> bool:
    """Is ``source`` a query on the ledger's own PostgreSQL database (the same URL)?"""
    if source.kind is not SourceKind.SQL or source.url is None or not source.query:
        return False
    url = source.url.reveal()
    try:
        return url == ledger_url and make_url(url).get_backend_name() == "postgresql"
    except Exception:  # an unparsable URL: the ordinary reader reports it
        return False


class QueryStream:
    """An SQL source in the ledger's database read by digest: the twin of ``streams.FileStream``.

    ``fill`` digests every row into the skim's table on the server; ``runs`` maps the rows given
    as ``(ordinal, digest)`` (ordinal: the row's position in the result, from 1), or every row
    with its digest. Raises ConfigError at once for a bad field spec.
    """

    def __init__(
        self, integration: IntegrationConfig, kind: RecordKind, spec: ObjectConfig, source: SourceConfig
    ) -> None:
        assert source.url is not None and source.query
        self.integration = integration
        self.kind = kind
        self.spec = spec
        self.source = source
        self.mapper = build_mapper(integration, kind, spec)
        # As the ordinary reader runs it (``:name`` escaped, final ``;`` and comments gone), on
        # lines of its own: a final -- comment must not swallow the closing parenthesis.
        self._query = f"\n{statement(source)}\n"
        self._key: int | None = None

    def classic(self) -> Iterator[Run]:
        """Every row mapped the ordinary way, without digests (when the query cannot be wrapped)."""
        return _classic_runs(self.mapper, self.source)

    def fill(self, conn: Connection, table: Table) -> int:
        """Digest every row of the query into ``table`` (ord, digest), on the server; how many.

        Raises Unscannable when the query cannot be read this way (the plan maps it the
        ordinary way, which reports a faulty query as usual).
        """
        quote = conn.dialect.identifier_preparer.quote
        sql = (
            f"INSERT INTO {quote(table.name)} (ord, digest) "
            f"SELECT row_number() OVER (), {_DIGEST} FROM ({self._query}) AS {_ROW}"
        )
        try:
            with conn.begin_nested():
                for setting in _STEADY:
                    conn.exec_driver_sql(setting)
                key = self._key_of(conn)
                count = conn.execute(text(sql), {"syncer_key": key}).rowcount
        except SQLAlchemyError as exc:
            raise Unscannable(f"source {self.source.name!r}: {type(exc).__name__}") from exc
        return int(count)

    def _key_of(self, conn: Connection) -> int:
        """The digests' key: the stream's ``seed``, with the query's column names and types."""
        if self._key is None:
            result = conn.execute(text(f"SELECT * FROM ({self._query}) AS {_ROW} LIMIT 0"))
            columns = [[str(c[0]), str(c[1])] for c in result.cursor.description or ()]
            result.close()
            header = orjson.dumps(columns)
            self._key = seed(self.integration, self.kind, self.spec, self.source, header)
        return self._key

    def runs(self, selected: Selection | None) -> Iterator[Run]:
        """Map the rows given as ``(ordinal, digest)`` in ordinal order, or every row (``None``);
        StagedRows carry their digest.

        A selected row whose digest is not the one ``fill`` gave means the source changed in
        between: SourceError. Reading every row may raise Unscannable instead.
        """
        if selected is not None and not selected:
            return iter(())
        return _staged_runs(self.mapper, self._rows(selected))

    def _rows(self, selected: Selection | None) -> Iterator[SourceRow]:
        source = self.source
        assert source.url is not None
        engine = create_engine(source.url.reveal())
        try:
            with engine.connect() as conn:
                try:
                    for setting in _STEADY:
                        conn.exec_driver_sql(setting)
                    key = self._key_of(conn)
                    inner = (
                        f"SELECT row_number() OVER () AS syncer_ord, {_ROW} FROM ({self._query}) AS {_ROW}"
                    )
                    digest = _DIGEST.replace(_ROW, f"n.{_ROW}")
                    sql = f"SELECT n.syncer_ord, {digest}, (n.{_ROW}).* FROM ({inner}) AS n"
                    params: dict[str, Any] = {"syncer_key": key}
                    if selected is not None:
                        sql += " WHERE n.syncer_ord = ANY(CAST(:syncer_ords AS bigint[]))"
                        params["syncer_ords"] = list(selected.ords)
                    sql += " ORDER BY n.syncer_ord"
                    result = conn.execution_options(stream_results=True, yield_per=SQL_BATCH_ROWS).execute(
                        text(sql), params
                    )
                    columns = [str(k) for k in result.keys()][2:]  # noqa: SIM118 - a Result, not a dict
                except SQLAlchemyError as exc:
                    if selected is None:
                        raise Unscannable(f"source {source.name!r}: {type(exc).__name__}") from exc
                    raise SourceError(_message(source, exc)) from exc
                wanted = iter(selected) if selected is not None else None
                name = source.name
                with result:
                    for row in result:
                        ordinal, digest = row[0], row[1]
                        if wanted is not None and next(wanted, None) != (ordinal, digest):
                            raise SourceError(_changed(source))
                        yield f"{name} row {ordinal}", dict(zip(columns, row[2:], strict=True)), digest
                if wanted is not None and next(wanted, None) is not None:
                    raise SourceError(_changed(source))  # fewer rows than the first reading found
        except SQLAlchemyError as exc:
            raise SourceError(_message(source, exc)) from exc
        finally:
            engine.dispose()


def _message(source: SourceConfig, exc: Exception) -> str:
    """The driver's first line, with the source's password masked (drivers may echo the DSN)."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    message = detail[0] if detail else type(exc).__name__
    password = make_url(source.url.reveal()).password if source.url is not None else None
    if password:
        message = message.replace(str(password), "***")
    return f"source {source.name!r}: {message}"


def _changed(source: SourceConfig) -> str:
    return f"source {source.name!r}: its rows changed while the plan read them; plan again"
