"""Cut a CSV or JSON Lines file into raw records (bytes) without parsing them, and digest them.

Most rows of a big source are the same from one run to the next. The planner digests the raw
bytes of every record (cheap: no CSV parsing, no mapping), finds in the ledger the digests of
the rows whose records are synced, and parses and maps only the other rows (plan/skim.py,
plan/streams.py). A digest is keyed by everything that decides what a row maps to: the
stream's config (fields, filters, integration), the source's format, the CSV header and the
syncer version; change any of them and every row is mapped again.

Cutting must agree exactly with how ``sources.load_values`` reads the file (the csv module on a
text stream opened with ``newline=''``). A line without a quote character is one record; a line
with one is handed to the csv module itself, which takes as many lines as the record spans.
What cannot be cut from the bytes alone raises Unscannable, and the planner then reads the file
the ordinary way: an encoding in which ASCII bytes may be part of other characters (UTF-16,
Shift JIS, ISO-2022-JP), bytes that do not decode (the text layer decodes ahead: the ordinary
reader reports them before the bad records above them), a carriage return that is not part of a
CRLF (the text layer ends a line there), a line the csv module refuses.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson

from syncer.config import IntegrationConfig, ObjectConfig, SourceConfig, SourceKind, Tolerance
from syncer.errors import SourceError
from syncer.models import RecordKind
from syncer.sources.readers import csv_error, csv_values, decode_error, jsonl_value, stream_encoding
from syncer.version import __version__

__all__ = ["DIGEST_SCHEME", "Unscannable", "cut", "digest_of", "parse", "parse_header", "runs", "seed"]

DIGEST_SCHEME = 1
"""Bump when the digest or the cutting changes: every row is then mapped again once."""

T = TypeVar("T")
_BLOCK = 1 << 20
_BOM = codecs.BOM_UTF8


class Unscannable(Exception):
    """The file cannot be cut into records from its bytes exactly as the csv module reads it."""


class _Tail(bytes):
    """The file's last line when it has no newline at its end."""


def _codecs(source: SourceConfig) -> tuple[str, bool]:
    """(codec for the records, strip a leading UTF-8 byte-order mark?); Unscannable if unsafe."""
    name = codecs.lookup(stream_encoding(source)).name
    if name in ("utf-8", "utf-8-sig"):
        return "utf-8", name == "utf-8-sig"
    ascii_ = bytes(range(128))
    try:
        same = ascii_.decode(name) == ascii_.decode("ascii")
        # Fed byte by byte, each gives one character at once: no pairs (Shift JIS), no escape
        # sequences switching to a mode where ASCII bytes make up other characters (ISO-2022-JP).
        decoder = codecs.getincrementaldecoder(name)(errors="replace")
        single_byte = all(len(decoder.decode(bytes([b]))) == 1 for b in range(256))
    except (LookupError, UnicodeError, TypeError):
        raise Unscannable(f"encoding {name}") from None
    if not (same and single_byte):  # ASCII bytes could be part of another character
        raise Unscannable(f"encoding {name}")
    return name, False


def _blocks(path: Path, codec: str, csv_quotes: bool) -> Iterator[tuple[list[bytes], bool]]:
    """The file's physical lines, without their newline, a block at a time; an unterminated last
    line comes as a _Tail. Each block comes with ``plain``: True when none of its lines holds a
    quote (``csv_quotes``) or a carriage return other than a CRLF's (judged on the whole block
    read: a False may be wrong, a True never is).

    Unscannable if the file does not decode: the text layer decodes ahead, so the ordinary
    reader reports an undecodable line before bad records on the lines above it.
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise Unscannable(str(exc)) from None
    # Checked a block at a time, and only a block that is not all ASCII (or ends a character):
    # UTF-8 by decoding it, a single-byte codec by looking for the bytes it cannot decode.
    decoder = codecs.getincrementaldecoder(codec)() if codec == "utf-8" else None
    bad = [] if decoder else [bytes([b]) for b in range(128, 256) if not bytes([b]).decode(codec, "ignore")]
    with handle:
        rest = b""
        while block := handle.read(_BLOCK):
            if not block.isascii() or (decoder and decoder.getstate()[0]):
                _check(block, decoder, bad)
            data = rest + block if rest else block
            lines = data.split(b"\n")
            rest = lines.pop()
            if lines:
                yield lines, _plain(data, csv_quotes)
        if decoder:
            _check(b"", decoder, bad, final=True)
        if rest:
            yield [_Tail(rest)], _plain(rest, csv_quotes) and not _bare_cr(rest)


_BARE_CR = re.compile(rb"\r[^\n]")


def _plain(data: bytes, csv_quotes: bool) -> bool:
    if csv_quotes and b'"' in data:
        return False
    # A CR ending the data is the end of a line cut in two (its LF starts the next block) or
    # the file's last byte: the text layer ends a line there either way.
    return b"\r" not in data or _BARE_CR.search(data) is None


def _check(
    block: bytes, decoder: codecs.IncrementalDecoder | None, bad: list[bytes], final: bool = False
) -> None:
    if decoder:
        try:
            decoder.decode(block, final)
        except UnicodeDecodeError as exc:
            raise Unscannable(f"cannot decode: {exc.reason}") from None
    elif any(byte in block for byte in bad):
        raise Unscannable("cannot decode")


def _bare_cr(line: bytes) -> bool:
    """A carriage return anywhere but at the end: the text layer would end a line there."""
    at = line.find(b"\r")
    return at != -1 and at != len(line) - 1


def cut(source: SourceConfig) -> Iterator[tuple[int, bytes]]:
    """Yield ``(first line, raw bytes)`` of each non-blank record of a CSV or JSON Lines file.

    For CSV the header is the first record yielded. A line without a quote comes without its
    newline (a CRLF keeps its CR); a record the csv module read (a quote in its first line)
    comes with all its newlines, as in the file, even on one line. Raises
    Unscannable (possibly after yielding records) when the file has to be read the ordinary way.
    """
    for first, raws in runs(source):
        for offset, raw in enumerate(raws):
            yield first + offset, raw


def runs(source: SourceConfig) -> Iterator[tuple[int, list[bytes]]]:
    """``cut`` in runs: ``(first line, records)``, record k of a run on line ``first + k``.

    Most of a file comes a whole block (about 1 MB) at a time, so that digesting a million
    records is a list comprehension rather than a million generator steps; a record spanning
    lines comes in a run of its own.
    """
    path = source.path
    if path is None or source.kind not in (SourceKind.CSV, SourceKind.JSONL):
        raise Unscannable("not a file source")
    codec, bom = _codecs(source)
    is_csv = source.kind is SourceKind.CSV
    blocks = _blocks(path, codec, is_csv)
    number = 1  # of the block's first line
    for lines, plain in blocks:
        if number == 1 and bom and lines[0].startswith(_BOM):
            lines[0] = type(lines[0])(lines[0][len(_BOM) :])
        if not is_csv:
            yield from _jsonl_runs(number, lines, plain)
        elif plain:
            if b"" in lines or b"\r" in lines:  # blank lines (LF or CRLF) end runs
                yield from _split_at_blanks(number, lines)
            else:
                yield number, lines
        else:
            yield from _csv_lines(number, lines, blocks, codec, source.delimiter)
        number += len(lines)  # _csv_lines may have added the lines of the next blocks


def _split_at_blanks(number: int, lines: list[bytes]) -> Iterator[tuple[int, list[bytes]]]:
    start = 0
    for index, line in enumerate(lines):
        if line == b"" or line == b"\r":
            if start < index:
                yield number + start, lines[start:index]
            start = index + 1
    if start < len(lines):
        yield number + start, lines[start:]


def _jsonl_runs(number: int, lines: list[bytes], plain: bool) -> Iterator[tuple[int, list[bytes]]]:
    start = 0
    for index, line in enumerate(lines):
        if not plain and b"\r" in line and _bare_cr(line):
            raise Unscannable(f"line {number + index}: carriage return")
        if not line.strip():
            if start < index:
                yield number + start, lines[start:index]
            start = index + 1
    if start < len(lines):
        yield number + start, lines[start:]


def _csv_lines(
    number: int,
    lines: list[bytes],
    blocks: Iterator[tuple[list[bytes], bool]],
    codec: str,
    delimiter: str,
) -> Iterator[tuple[int, list[bytes]]]:
    """A block with quotes or carriage returns, line by line.

    A line with a quote starts a record the csv module reads; it may run on into the next
    blocks, whose lines are then added to ``lines`` (and read line by line too).
    """
    index = start = 0
    while index < len(lines):
        line = lines[index]
        if b'"' in line:
            if start < index:
                yield number + start, lines[start:index]
            taken = _quoted(lines, index, blocks, codec, delimiter)
            last = lines[index + taken - 1]
            raw = b"\n".join(lines[index : index + taken]) + (b"" if isinstance(last, _Tail) else b"\n")
            yield number + index, [raw]
            index = start = index + taken
        elif b"\r" in line and _bare_cr(line):
            raise Unscannable(f"line {number + index}: carriage return")
        elif line == b"" or line == b"\r":  # blank (LF or CRLF)
            if start < index:
                yield number + start, lines[start:index]
            index = start = index + 1
        else:
            index += 1
    if start < len(lines):
        yield number + start, lines[start:]


def _quoted(
    lines: list[bytes], index: int, blocks: Iterator[tuple[list[bytes], bool]], codec: str, delimiter: str
) -> int:
    """How many lines the record starting at ``lines[index]`` spans, as the csv module reads it.

    Lines of the next blocks are added to ``lines`` as the record needs them.
    """
    taken = 0

    def feed() -> Iterator[str]:
        nonlocal taken
        at = index
        while True:
            if at == len(lines):
                following = next(blocks, None)
                if following is None:
                    return
                lines.extend(following[0])
            line = lines[at]
            at += 1
            taken += 1
            if b"\r" in line and _bare_cr(line):
                raise Unscannable("carriage return")
            yield line.decode(codec) + ("" if isinstance(line, _Tail) else "\n")

    try:
        fields = next(csv.reader(feed(), delimiter=delimiter))
    except (csv.Error, UnicodeDecodeError, StopIteration) as exc:
        raise Unscannable(str(exc)) from None
    if not fields:  # a quote makes a line non-blank: never seen, but be exact
        raise Unscannable("blank record")
    return taken


# -- digests --------------------------------------------------------------------------------------


def seed(
    integration: IntegrationConfig, kind: RecordKind, spec: ObjectConfig, source: SourceConfig, header: bytes
) -> int:
    """The key of a stream's digests: what the mapping of a row depends on, besides the row."""
    parts = {
        "scheme": DIGEST_SCHEME,
        "syncer": __version__,
        "kind": kind.value,
        "integration": _facts(dataclasses.replace(integration, courses=None, stats=None)),
        # What decides how invalid rows are tolerated or whether courses are archived does not
        # change what a row maps to.
        "spec": mapping_facts(spec),
        "source": [source.kind.value, source.delimiter, source.encoding],
    }
    digest = hashlib.blake2b(orjson.dumps(parts, default=repr), digest_size=8)
    digest.update(b"\0" + header)
    return int.from_bytes(digest.digest(), "little", signed=True)


def mapping_facts(spec: ObjectConfig) -> Any:
    """What a stream's rows map to, besides the rows: field rules, filters and options, as plain
    data (how invalid rows are tolerated, or whether courses are archived, changes no record)."""
    return _facts(dataclasses.replace(spec, tolerate_invalid=Tolerance(), archive_missing=False))


def _facts(value: Any) -> Any:
    """A config object as plain data, without the config-file positions (``where``)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _facts(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "where"
        }
    if isinstance(value, tuple | list):
        return [_facts(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _facts(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if hasattr(value, "items"):  # a read-only mapping
        return _facts(dict(value.items()))
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def digest_of(raw: bytes, key: int) -> int:
    """The digest of one raw record under a stream's ``seed`` (a signed 64-bit integer)."""
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little", signed=True) ^ key


# -- parsing the records that need mapping ---------------------------------------------------------


def parse(
    source: SourceConfig, header: list[str] | None, records: Iterable[tuple[int, bytes, T]]
) -> Iterator[tuple[str, dict[str, Any] | None, T]]:
    """``(origin, values, extra)`` of each given record, as ``sources.load_values`` reads it.

    ``header`` is the CSV's column names (None for JSON Lines). A record the ordinary reader
    skips (a line blank only once decoded) gives None for values; a bad record raises the same
    SourceError as the ordinary reader.
    """
    codec, _bom = _codecs(source)
    name = source.path.name if source.path else source.name
    if header is None:
        for number, raw, extra in records:
            text = _decode(source, raw, codec)
            try:
                value = jsonl_value(source, number, text)
            except SourceError:
                # The ordinary reader parses the line with its newline, and orjson's message may
                # depend on it (an unterminated string): give its message.
                if not _unterminated(source.path, number):
                    jsonl_value(source, number, text + "\n")
                raise
            yield f"{name}:{number}", value, extra
        return
    batch: list[tuple[int, str, T]] = []
    for number, raw, extra in records:
        batch.append((number, _decode(source, raw, codec), extra))
        if len(batch) >= 1000:
            yield from _csv_batch(source, name, header, batch)
            batch = []
    if batch:
        yield from _csv_batch(source, name, header, batch)


def _unterminated(path: Path | None, number: int) -> bool:
    """Is line ``number`` the file's last, without a newline? (Read on an error only.)"""
    if path is None:
        return False
    newlines, last = 0, b"\n"
    try:
        with path.open("rb") as handle:
            while block := handle.read(_BLOCK):
                newlines += block.count(b"\n")
                last = block[-1:]
    except OSError:  # pragma: no cover - the file vanished since it was cut
        return False
    return last != b"\n" and number == newlines + 1


def parse_header(source: SourceConfig, raw: bytes) -> list[str]:
    """The column names in a CSV's first record, as ``sources.load_values`` reads them."""
    codec, _bom = _codecs(source)
    try:
        fields = next(csv.reader([_decode(source, raw, codec)], delimiter=source.delimiter), [])
    except csv.Error as exc:
        raise Unscannable(str(exc)) from None
    return [name.strip() for name in fields]


def _decode(source: SourceConfig, raw: bytes, codec: str) -> str:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise decode_error(source, exc) from exc


def _csv_batch(
    source: SourceConfig, name: str, header: list[str], batch: list[tuple[int, str, T]]
) -> Iterator[tuple[str, dict[str, Any] | None, T]]:
    # Each text is one whole record (cut() made sure): one reader parses them all in one go.
    reader = csv.reader([text for _number, text, _extra in batch], delimiter=source.delimiter)
    position = 0
    try:
        for values in reader:
            number, _text, extra = batch[position]
            position += 1
            yield f"{name}:{number}", csv_values(source, header, number, values), extra
    except csv.Error as exc:
        raise csv_error(source, batch[min(position, len(batch) - 1)][0], exc) from exc
