"""PostgreSQL fixtures: each test gets its own schema on the machine's server, dropped afterwards.

The server is 127.0.0.1:5432, user ``postgres``, database ``test`` (override with
``SYNCER_PG_URL``). Without a server the tests are skipped with the reason, except when
``SYNCER_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it): then they fail, so CI never passes them silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

BASE_URL = os.environ.get("SYNCER_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """An autocommit engine on the test database, or a skip (a failure in CI) when none answers."""
    engine = create_engine(BASE_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # the server is optional on a developer machine, required in CI
        engine.dispose()
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        reason = f"no PostgreSQL server at {engine.url.render_as_string(hide_password=True)}: {detail}"
        if os.environ.get("SYNCER_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (SYNCER_REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(reason)
    yield engine
    engine.dispose()


def schema_url(schema: str) -> str:
    """The URL whose connections work in ``schema`` (and say so in ``application_name``)."""
    sep = "&" if "?" in BASE_URL else "?"
    return f"{BASE_URL}{sep}options=-csearch_path%3D{schema}&application_name={schema}"


def drop_schema(admin: Engine, schema: str) -> None:
    """End every session still working in ``schema`` (a killed child's, a leaked pool) and drop it."""
    with admin.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :s"),
            {"s": schema},
        )
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture
def pg_schema(pg_admin: Engine) -> Iterator[str]:
    """A fresh, uniquely named schema, dropped at teardown."""
    schema = f"syncer_test_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield schema
    drop_schema(pg_admin, schema)


@pytest.fixture
def pg_url(pg_schema: str) -> str:
    """A ledger URL whose connections use the test's own schema."""
    return schema_url(pg_schema)
