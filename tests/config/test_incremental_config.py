"""Config of incremental SQL sources: ``cursor``, ``overlap``, ``full_every`` and what they exclude.

``overlap`` and ``full_every`` need a ``cursor``; ``archive_missing`` on courses read from an
incremental source needs that source's ``full_every`` (only full reads archive). Each problem is
reported at its place, ``FILE:LINE:COL``, all of them at once.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncer.cli import cli
from syncer.config import load_config
from syncer.config.build import duration
from syncer.errors import ConfigError

CATALOG = "SELECT course_id, title, updated_at FROM courses"
STATS = "SELECT course_id, email, pct, seconds, started, finished, updated_at FROM stats"


def config_text(
    catalog: str = "",
    progress: str = "",
    *,
    archive_missing: bool = True,
    beta: bool = False,
    url: str = "sqlite:///warehouse.db",
) -> str:
    """A config whose two sources are queries; ``catalog``/``progress``: more lines of their sql."""

    def sql(query: str, extra: str) -> str:
        lines = [f"      url: {url}", f"      query: {query}"]
        lines += [f"      {line}" for line in extra.splitlines()]
        return "\n".join(lines)

    def integration(name: str, oid: str) -> str:
        return f"""\
  {name}:
    id: {oid}
    courses:
      source: catalog
      archive_missing: {"true" if archive_missing else "false"}
      fields:
        externalId: course_id
        name: title
        launchUrl: {{template: "https://acme.example/{{course_id}}"}}
        defaultLang: {{value: en}}
        sources: {{value: [{{name: Acme}}]}}
        subjects: {{value: []}}
    stats:
      source: progress
      fields:
        course: {{externalId: course_id}}
        user: {{mail: email}}
        progress: pct
        timeSpent: {{column: seconds, unit: s}}
        firstActivityAt: started
        lastActivityAt: finished
"""

    text = f"""\
version: 1
api: {{base_url: "http://127.0.0.1:8360", client_id: demo, client_secret: x}}
ledger: sqlite:///ledger.db
sources:
  catalog:
    sql:
{sql(CATALOG, catalog)}
  progress:
    sql:
{sql(STATS, progress)}
integrations:
{integration("acme", "507f1f77bcf86cd799439011")}"""
    if beta:
        text += integration("beta", "507f1f77bcf86cd799439012")
    return text


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncer.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def at(path: Path, needle: str, *, nth: int = 1, value: bool = False) -> str:
    """``FILE:LINE:COL`` of the ``nth`` line holding ``needle``: its key, or its value."""
    lines = [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    number, line = lines[nth - 1]
    column = line.index(": ") + 3 if value else len(line) - len(line.lstrip()) + 1
    return f"{path}:{number}:{column}"


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value).splitlines()


ONLY_WITH_CURSOR = "applies only to an incremental source: add cursor: COLUMN (e.g. updated_at)"


def archive_problem(integration: str) -> str:
    return (
        f"integrations.{integration}.courses.archive_missing: source 'catalog' is read incrementally "
        "(cursor:), so a course it does not read is not gone: add full_every: 7d (or another period) to "
        "catalog's sql, then courses are archived by its full reads (and by apply --full), or remove "
        "archive_missing"
    )


# -- what needs what ------------------------------------------------------------------------------


def test_overlap_and_full_every_need_a_cursor(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(progress="overlap: 5m\nfull_every: 7d"))
    assert problems(path) == [
        f"{at(path, 'overlap:')}: sources.progress.sql.overlap: {ONLY_WITH_CURSOR}",
        f"{at(path, 'full_every:')}: sources.progress.sql.full_every: {ONLY_WITH_CURSOR}",
    ]


def test_archive_missing_from_an_incremental_catalog_needs_full_every(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(catalog="cursor: updated_at", beta=True))
    assert problems(path) == [
        f"{at(path, 'archive_missing:', value=True)}: {archive_problem('acme')}",
        f"{at(path, 'archive_missing:', nth=2, value=True)}: {archive_problem('beta')}",
    ]


def test_every_problem_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(catalog="cursor: updated_at", progress="overlap: 30s"))
    assert problems(path) == [
        f"{at(path, 'overlap:')}: sources.progress.sql.overlap: {ONLY_WITH_CURSOR}",
        f"{at(path, 'archive_missing:', value=True)}: {archive_problem('acme')}",
    ]


@pytest.mark.parametrize(
    ("catalog", "archive_missing"),
    [
        pytest.param("cursor: updated_at\nfull_every: 7d", True, id="with-full_every"),
        pytest.param("cursor: updated_at", False, id="no-archive_missing"),
        pytest.param("", True, id="not-incremental"),
    ],
)
def test_archive_missing_allowed(tmp_path: Path, catalog: str, archive_missing: bool) -> None:
    config = load_config(write(tmp_path, config_text(catalog=catalog, archive_missing=archive_missing)))
    assert config.integrations["acme"].courses is not None
    assert config.integrations["acme"].courses.archive_missing is archive_missing


def test_an_incremental_source_as_built(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        config_text(catalog="cursor: updated_at\nfull_every: 2w", progress="cursor: version\noverlap: 1000"),
    )
    config = load_config(path)
    catalog, progress = config.sources["catalog"], config.sources["progress"]
    assert (catalog.cursor, catalog.overlap, catalog.full_every) == ("updated_at", None, timedelta(weeks=2))
    assert (progress.cursor, progress.overlap, progress.full_every) == ("version", 1000, None)
    assert catalog.window is None and progress.window is None  # the planner's, for one run
    plain = load_config(write(tmp_path, config_text())).sources["progress"]
    assert (plain.cursor, plain.overlap, plain.full_every) == (None, None, None)


def test_a_relative_sqlite_source_is_relative_to_its_file(tmp_path: Path) -> None:
    """Like file sources and the ledger: not to the working directory of a cron job."""
    config = load_config(write(tmp_path, config_text(url="sqlite:///warehouse.db?mode=ro")))
    assert config.sources["progress"].url is not None
    assert config.sources["progress"].url.reveal() == f"sqlite:///{tmp_path.resolve()}/warehouse.db?mode=ro"
    memory = load_config(write(tmp_path, config_text(url="sqlite://"))).sources["catalog"].url
    assert memory is not None and memory.reveal() == "sqlite://"


# -- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        ("0s", timedelta(0)),
        ("0.5s", timedelta(milliseconds=500)),
    ],
)
def test_durations(tmp_path: Path, text: str, expected: timedelta) -> None:
    assert duration(text) == expected
    every = text if expected else "1d"  # a full_every of 0 is refused (below)
    path = write(tmp_path, config_text(progress=f"cursor: updated_at\noverlap: {text}\nfull_every: {every}"))
    progress = load_config(path).sources["progress"]
    assert (progress.overlap, progress.full_every) == (expected, duration(every))


@pytest.mark.parametrize("every", ["0s", "0d", "0.0h"])
def test_a_full_every_of_zero_is_refused(tmp_path: Path, every: str) -> None:
    path = write(tmp_path, config_text(progress=f"cursor: updated_at\nfull_every: {every}"))
    assert problems(path) == [
        f"{at(path, 'full_every', value=True)}: sources.progress.sql.full_every: a period of 0 makes "
        "every read a full one: give a longer one (7d), or remove cursor"
    ]


@pytest.mark.parametrize("number", [0, 2.5, 1000])
def test_a_numeric_overlap(tmp_path: Path, number: float) -> None:
    path = write(tmp_path, config_text(progress=f"cursor: version\noverlap: {number}"))
    overlap = load_config(path).sources["progress"].overlap
    assert overlap == number and not isinstance(overlap, timedelta)


OVERLAP_WANTED = (
    "give a duration such as 30s, 5m, 2h or 1d (a date-time cursor) or a number (a numeric cursor)"
)
FULL_EVERY_WANTED = "give a duration such as 12h, 7d or 2w"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param("overlap: 5 minutes", f"{OVERLAP_WANTED} (got '5 minutes')", id="words"),
        pytest.param("overlap: 5M", f"{OVERLAP_WANTED} (got '5M')", id="capital"),
        pytest.param("overlap: 1y", f"{OVERLAP_WANTED} (got '1y')", id="years"),
        pytest.param("overlap: '5'", f"{OVERLAP_WANTED} (got '5')", id="quoted-number"),
        pytest.param("overlap: -5", "must be at least 0 (got -5)", id="negative"),
        pytest.param("full_every: 7", f"{FULL_EVERY_WANTED} (got 7)", id="full_every-number"),
        pytest.param("full_every: 7 days", f"{FULL_EVERY_WANTED} (got '7 days')", id="full_every-words"),
    ],
)
def test_a_bad_duration_is_located(tmp_path: Path, line: str, message: str) -> None:
    key = line.split(":")[0]
    path = write(tmp_path, config_text(progress=f"cursor: updated_at\n{line}"))
    (problem,) = problems(path)
    assert problem == f"{at(path, f'{key}:', value=True)}: sources.progress.sql.{key}: {message}"


def test_a_cursor_is_a_column_name(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(progress="cursor: ''"))
    (problem,) = problems(path)
    assert problem == f"{at(path, 'cursor:', value=True)}: sources.progress.sql.cursor: must not be empty"


def test_a_csv_source_has_no_cursor(tmp_path: Path) -> None:
    text = config_text().replace(
        f"  progress:\n    sql:\n      url: sqlite:///warehouse.db\n      query: {STATS}\n",
        "  progress:\n    csv: stats.csv\n    cursor: updated_at\n",
    )
    path = write(tmp_path, text)
    (problem,) = problems(path)
    assert problem == (
        f"{at(path, 'cursor:')}: sources.progress.cursor: unknown key 'cursor'; expected one of: csv, "
        "delimiter, encoding"
    )


# -- syncer validate: the cursor is a column of the query ----------------------------------------


def _warehouse(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE courses (course_id TEXT, title TEXT, updated_at TEXT)")
        conn.execute(
            "CREATE TABLE stats (course_id TEXT, email TEXT, pct INTEGER, seconds INTEGER, started TEXT,"
            " finished TEXT, updated_at TEXT)"
        )


def test_validate_names_a_cursor_the_query_lacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _warehouse(tmp_path / "warehouse.db")
    monkeypatch.chdir(tmp_path)
    path = write(
        tmp_path, config_text(catalog="cursor: updated_at\nfull_every: 7d", progress="cursor: changed_at")
    )
    result = CliRunner().invoke(cli, ["validate", str(path)], prog_name="syncer")
    assert result.exit_code == 1, result.output
    assert (
        "cursor column 'changed_at' is not a column of source 'progress' (its query gives: course_id, email, "
        "finished, pct, seconds, started, updated_at)"
    ) in result.stderr
    assert "'updated_at' is not a column" not in result.stderr

    good = write(
        tmp_path, config_text(catalog="cursor: updated_at\nfull_every: 7d", progress="cursor: updated_at")
    )
    ok = CliRunner().invoke(cli, ["validate", str(good)], prog_name="syncer")
    assert ok.exit_code == 0, ok.stderr
