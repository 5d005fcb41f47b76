"""Stage 2, the sources: CSV, JSON Lines and SQL rows with their origin; raw records and their digests."""

from __future__ import annotations

from syncer.sources.digest import (
    DIGEST_SCHEME as DIGEST_SCHEME,
)
from syncer.sources.digest import (
    Unscannable as Unscannable,
)
from syncer.sources.digest import (
    cut as cut,
)
from syncer.sources.digest import (
    digest_of as digest_of,
)
from syncer.sources.digest import (
    parse as parse,
)
from syncer.sources.digest import (
    parse_header as parse_header,
)
from syncer.sources.digest import (
    runs as runs,
)
from syncer.sources.digest import (
    seed as seed,
)
from syncer.sources.readers import (
    SQL_BATCH_ROWS as SQL_BATCH_ROWS,
)
from syncer.sources.readers import (
    Share as Share,
)
from syncer.sources.readers import (
    csv_error as csv_error,
)
from syncer.sources.readers import (
    csv_values as csv_values,
)
from syncer.sources.readers import (
    decode_error as decode_error,
)
from syncer.sources.readers import (
    jsonl_value as jsonl_value,
)
from syncer.sources.readers import (
    load_columns as load_columns,
)
from syncer.sources.readers import (
    load_rows as load_rows,
)
from syncer.sources.readers import (
    load_values as load_values,
)
from syncer.sources.readers import (
    stream_encoding as stream_encoding,
)

__all__ = [
    "DIGEST_SCHEME",
    "SQL_BATCH_ROWS",
    "Share",
    "Unscannable",
    "csv_error",
    "csv_values",
    "cut",
    "decode_error",
    "digest_of",
    "jsonl_value",
    "load_columns",
    "load_rows",
    "load_values",
    "parse",
    "parse_header",
    "runs",
    "seed",
    "stream_encoding",
]
