"""Read sources (CSV, JSON Lines, SQL) as lazy streams of rows, each with its origin.

Memory does not grow with the source: files are read line by line and SQL queries run on a
server-side cursor (``stream_results`` with ``yield_per``). Every read failure becomes a
SourceError naming the file and line (or the source and row); nothing else escapes.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Generator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import IO, Any

import orjson

from syncer.config import SourceConfig, SourceKind
from syncer.errors import SourceError
from syncer.models import Row
from syncer.secrets import redact_url

__all__ = [
    "SQL_BATCH_ROWS",
    "csv_error",
    "csv_values",
    "declared",
    "decode_error",
    "full_read_facts",
    "high_water",
    "jsonl_value",
    "load_columns",
    "load_rows",
    "load_values",
    "statement",
    "stream_encoding",
    "windowed",
]

SQL_BATCH_ROWS = 1000
"""Rows fetched per round trip from an SQL source's server-side cursor."""


def load_rows(source: SourceConfig) -> Generator[Row, None, None]:
    """Stream the rows of ``source``; raises SourceError (with file:line) while iterating."""
    with closing(load_values(source)) as pairs:
        for origin, values in pairs:
            yield Row(origin, values)


Share = tuple[int, int, int]
"""(index, count, size): of the rows cut in chunks of ``size``, only the chunks whose number is
``index`` modulo ``count`` (several processes each map their share of one file)."""


def load_values(
    source: SourceConfig, share: Share | None = None
) -> Generator[tuple[str, dict[str, Any]], None, None]:
    """Stream ``(origin, values)`` of each row: ``load_rows`` without a Row object per row.

    The planner's hot path reads millions of rows; building a frozen Row for each costs more
    than the CSV parsing itself. With ``share`` (files only) the other rows are parsed, for
    their line numbers and errors, but not built.
    """
    if source.kind is SourceKind.CSV:
        return _csv_rows(source, share)
    if source.kind is SourceKind.JSONL:
        return _jsonl_rows(source, share)
    if share is not None:
        raise ValueError("only file sources can be read in shares")
    return _sql_rows(source)


def load_columns(source: SourceConfig) -> list[str]:
    """The source's column names: CSV header, first JSON object's keys, or the query's columns."""
    if source.kind is SourceKind.CSV:
        with _open_text(source) as stream:
            reader = csv.reader(stream, delimiter=source.delimiter)
            return _csv_header(source, reader)
    if source.kind is SourceKind.JSONL:
        for _origin, values in _jsonl_rows(source):
            return list(values)
        return []
    with closing(_sql_cursor(source)) as cursor:
        return next(cursor)  # the first item the generator yields is the column list


# --- files -------------------------------------------------------------------------------------


def _path(source: SourceConfig) -> Path:
    if source.path is None:
        raise SourceError(f"source {source.name!r} has no file path{declared(source)}")
    return source.path


def declared(source: SourceConfig) -> str:
    """`` (source 'NAME' declared at FILE:LINE:COL)``, for the end of a source's messages."""
    return f" (source {source.name!r} declared at {source.where})" if source.where else ""


def stream_encoding(source: SourceConfig) -> str:
    """The codec a file source is read with (utf-8 reads as utf-8-sig: a BOM is dropped)."""
    # utf-8-sig reads a byte-order mark away (Excel writes one) and is plain utf-8 otherwise.
    try:
        name = codecs.lookup(source.encoding).name
    except LookupError as exc:
        raise SourceError(f"{_path(source)}: unknown encoding {source.encoding!r}{declared(source)}") from exc
    return "utf-8-sig" if name == "utf-8" else source.encoding


def _open_text(source: SourceConfig) -> IO[str]:
    path = _path(source)
    encoding = stream_encoding(source)
    try:
        return path.open("r", encoding=encoding, newline="")
    except FileNotFoundError as exc:
        raise SourceError(f"{path}: file not found{declared(source)}") from exc
    except IsADirectoryError as exc:
        raise SourceError(f"{path}: is a directory, not a file{declared(source)}") from exc
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}{declared(source)}") from exc


def decode_error(source: SourceConfig, exc: UnicodeDecodeError) -> SourceError:
    """A SourceError naming the physical line of a decoding error (the text layer decodes ahead in chunks)."""
    path = _path(source)
    decoder = codecs.getincrementaldecoder(stream_encoding(source))()
    line = 1
    try:
        with path.open("rb") as raw:
            for chunk in raw:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    break
                line += chunk.count(b"\n")
    except OSError:  # pragma: no cover - the file vanished between two reads
        pass
    return SourceError(
        f"{path}:{line}: cannot decode the file as {source.encoding} ({exc.reason});"
        f" set the source's encoding{declared(source)}"
    )


def _csv_header(source: SourceConfig, reader: Any) -> list[str]:
    try:
        for header in reader:
            if header:
                return [name.strip() for name in header]
    except UnicodeDecodeError as exc:
        raise decode_error(source, exc) from exc
    except csv.Error as exc:
        raise SourceError(f"{_path(source)}:{reader.line_num}: {exc}") from exc
    return []


def _csv_rows(
    source: SourceConfig, share: Share | None = None
) -> Generator[tuple[str, dict[str, Any]], None, None]:
    path = _path(source)
    name = path.name
    index, count, size = share or (0, 1, 1)
    number = -1
    with _open_text(source) as stream:
        reader = csv.reader(stream, delimiter=source.delimiter)
        header = _csv_header(source, reader)
        width = len(header)
        line = reader.line_num
        try:
            for values in reader:
                # A quoted value may span lines: the record starts after the previous one ended.
                start, line = line + 1, reader.line_num
                if len(values) == width:
                    number += 1
                    if count == 1 or (number // size) % count == index:
                        yield f"{name}:{start}", dict(zip(header, values, strict=True))
                elif values:
                    csv_values(source, header, start, values)  # raises
        except UnicodeDecodeError as exc:
            raise decode_error(source, exc) from exc
        except csv.Error as exc:
            raise csv_error(source, reader.line_num, exc) from exc


def csv_error(source: SourceConfig, line: int, exc: csv.Error) -> SourceError:
    """The SourceError for a record the csv module refuses, at ``line``."""
    return SourceError(f"{_path(source)}:{line}: {exc}{declared(source)}")


def csv_values(
    source: SourceConfig, header: list[str], start: int, values: list[str]
) -> dict[str, str] | None:
    """One CSV record as a dict; None for a blank line (csv gives []); a SourceError if too short or long."""
    if len(values) == len(header):
        return dict(zip(header, values, strict=True))
    if not values:
        return None
    raise SourceError(
        f"{_path(source)}:{start}: {len(values)} values, but the header has {len(header)} columns"
        f"{declared(source)}"
    )


def _jsonl_rows(
    source: SourceConfig, share: Share | None = None
) -> Generator[tuple[str, dict[str, Any]], None, None]:
    path = _path(source)
    name = path.name
    index, count, size = share or (0, 1, 1)
    row = -1
    with _open_text(source) as stream:
        try:
            for number, text in enumerate(stream, start=1):
                if not text.strip():
                    continue
                row += 1
                if count > 1 and (row // size) % count != index:
                    continue  # another process's share (a bad line there is its to report)
                value = jsonl_value(source, number, text)
                if value is not None:
                    yield f"{name}:{number}", value
        except UnicodeDecodeError as exc:
            raise decode_error(source, exc) from exc


def jsonl_value(source: SourceConfig, number: int, text: str) -> dict[str, Any] | None:
    """The object on one JSON line; None for a blank line; a SourceError if not an object."""
    if not text.strip():
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SourceError(f"{_path(source)}:{number}: not valid JSON ({exc.msg}){declared(source)}") from exc
    if not isinstance(value, dict):
        raise SourceError(
            f"{_path(source)}:{number}: a JSON {_json_kind(value)}, not an object{declared(source)}"
        )
    return value


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


# --- SQL ---------------------------------------------------------------------------------------


def _sql_rows(source: SourceConfig) -> Generator[tuple[str, dict[str, Any]], None, None]:
    cursor = _sql_cursor(source)
    with closing(cursor):
        columns = next(cursor)
        for number, values in enumerate(cursor, start=1):
            yield f"{source.name} row {number}", dict(zip(columns, values, strict=True))


def _sql_cursor(source: SourceConfig) -> Generator[Any, None, None]:
    """Yield the column list, then each row's tuple; SQLAlchemy errors become SourceError."""
    from sqlalchemy import text

    with _sql_connection(source) as conn:
        query, params = windowed(conn, source)
        result = conn.execution_options(stream_results=True, yield_per=SQL_BATCH_ROWS).execute(
            text(query), params
        )
        with result:
            yield [str(key) for key in result.keys()]  # noqa: SIM118 - a Result, not a dict
            for row in result:
                yield tuple(row)


@contextmanager
def _sql_connection(source: SourceConfig, hint: str = "") -> Iterator[Any]:
    """A connection to the source's database, for one statement; its errors become SourceError
    (``hint`` is added to an error message that names it: the cursor column)."""
    # Imported here: a config with only file sources never pays for SQLAlchemy's import.
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    if source.url is None or not source.query:
        raise SourceError(f"source {source.name!r} needs an SQL url and query{declared(source)}")
    url = source.url.reveal()
    engine = None
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        message = _sql_message(source, url, exc)
        if hint and source.cursor and source.cursor.lower() in message.lower():
            message += hint
        raise SourceError(message) from exc
    except ImportError as exc:  # a missing DB driver surfaces as a plain ImportError
        raise SourceError(
            f"source {source.name!r}: the database driver is not installed ({exc.name}){declared(source)}"
        ) from exc
    finally:
        if engine is not None:
            engine.dispose()


_WINDOW = "syncer_window"
# What ``text()`` takes for a bind parameter (SQLAlchemy's own pattern): ``:name``, not ``::type``.
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?![:\w])")


def statement(source: SourceConfig) -> str:
    """The source's query as ``text()`` takes it: without its final ``;`` (it may become a
    subquery), and every ``:name`` in it escaped, so that a literal such as ``'a :b'`` reaches the
    database as written instead of being taken for a parameter syncer never binds. Comment
    lines at its end go too, and a comment after its final ``;`` (``...; -- all rows``)."""
    lines = (source.query or "").strip().splitlines()
    while lines and lines[-1].strip().startswith("--"):
        lines.pop()
    query = _FINAL_COMMENT.sub("", "\n".join(lines).strip())
    return _BIND.sub(r"\\:\1", query.strip().rstrip(";").strip())


_FINAL_COMMENT = re.compile(r";[ \t]*--[^\n'\"]*$")
"""``; -- comment`` ending a query: the comment goes with the ``;`` (no quote in it: not a literal)."""


def windowed(conn: Any, source: SourceConfig) -> tuple[str, dict[str, Any]]:
    """The source's query and its parameters, limited to its ``window`` when it has one.

    The query becomes a subquery: ``SELECT * FROM (QUERY) AS syncer_window WHERE "cursor" >=
    :syncer_since AND "cursor" <= :syncer_upto`` (the column quoted as the dialect quotes it).
    """
    assert source.query is not None
    query = statement(source)
    window = source.window
    if window is None or (window.since is None and window.upto is None):
        return query, {}
    column = f"{_WINDOW}.{conn.dialect.identifier_preparer.quote(window.column)}"
    tests, params = [], {}
    if window.since is not None:
        tests.append(f"{column} >= :syncer_since")
        params["syncer_since"] = window.since
    if window.upto is not None:
        tests.append(f"{column} <= :syncer_upto")
        params["syncer_upto"] = window.upto
    # On lines of its own: a query ending in a -- comment must not swallow the parenthesis.
    return f"SELECT * FROM (\n{query}\n) AS {_WINDOW} WHERE {' AND '.join(tests)}", params


def high_water(source: SourceConfig, since: Any = None) -> Any:
    """The greatest value of the source's cursor column (among rows from ``since`` on), or None.

    Asked before the rows are read: a row written after this answer, with a greater value, is
    read by the next run; one written late with a smaller value is what the overlap is for.
    """
    return _cursor_aggregate(source, "max({c})", since)


def full_read_facts(source: SourceConfig) -> tuple[Any, int]:
    """For a full read, in one scan: ``high_water`` and how many rows have a NULL cursor (no
    incremental read ever reads those; a full read does)."""
    found = _cursor_aggregate(source, "max({c}), count(*) - count({c})")
    return found[0], int(found[1] or 0)


def _cursor_aggregate(source: SourceConfig, aggregates: str, since: Any = None) -> Any:
    """``SELECT aggregates`` of the source's rows (from ``since`` on); ``{c}``: the cursor column.
    One value is returned as such, several as a row."""
    from sqlalchemy import text

    if not source.cursor:
        raise SourceError(f"source {source.name!r} needs a cursor column{declared(source)}")
    hint = f" (is cursor: {source.cursor} a column of the query's result?)"
    with _sql_connection(source, hint) as conn:
        column = f"{_WINDOW}.{conn.dialect.identifier_preparer.quote(source.cursor)}"
        sql = f"SELECT {aggregates.format(c=column)} FROM (\n{statement(source)}\n) AS {_WINDOW}"
        params = {}
        if since is not None:
            sql += f" WHERE {column} >= :syncer_since"
            params["syncer_since"] = since
        row = conn.execute(text(sql), params).one()
        return row[0] if len(row) == 1 else tuple(row)


def _sql_message(source: SourceConfig, url: str, exc: Exception) -> str:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    message = detail[0] if detail else type(exc).__name__
    # Drivers may echo the DSN; never let the password through, whatever the message holds.
    # (SQLAlchemy is imported only where a SQL source is read: file sources never load it.)
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:  # an unparsable URL has no password we could name
        password = None
    if password:
        message = message.replace(str(password), "***")
    message = message.replace(url, redact_url(url))
    return f"source {source.name!r} ({redact_url(url)}): {message}{declared(source)}"
