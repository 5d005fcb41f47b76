"""``apply --simulate``: a run against an in-process simulator and a throw-away copy of the ledger.

The only apply module that imports the simulator, and only the CLI imports it: the production
apply path never loads the simulator. ``simulated`` hands back the config pointed at both; the
CLI then runs the ordinary apply with it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from sqlalchemy.engine import make_url

from syncer.config import Config
from syncer.progress import event
from syncer.secrets import Secret
from syncer.simulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, SimulatorSettings, SimulatorThread


@contextlib.contextmanager
def simulated(config: Config, *, op_seconds: float = 0.2) -> Iterator[Config]:
    """The config pointed at an in-process simulator and a throw-away copy of its ledger.

    A SQLite ledger is copied (SQLite's backup API, so a live ledger copies consistently); any
    other ledger is replaced by an empty one, since a server database cannot be copied cheaply.
    Integrations given by ``id`` are created in the simulator so the run finds them.
    """
    with tempfile.TemporaryDirectory(prefix="syncer-simulate-") as tmp:
        copy = Path(tmp) / "ledger.db"
        source = make_url(config.ledger_url.reveal())
        if source.get_backend_name() == "sqlite" and source.database and Path(source.database).is_file():
            # closing(): a sqlite3 connection's own context manager commits but does not close.
            with (
                contextlib.closing(sqlite3.connect(source.database)) as src,
                contextlib.closing(sqlite3.connect(copy)) as dst,
            ):
                src.backup(dst)
        known = _ledger_ids(copy) if copy.is_file() else {}
        with SimulatorThread(SimulatorSettings(op_seconds=op_seconds)) as sim:
            for spec in config.integrations.values():
                if spec.id is not None:
                    sim.state.add_integration(_id=spec.id, externalPlatform=spec.platform or spec.name)
                elif spec.name in known:
                    # Declared and known to the ledger: the simulated platform has it under the
                    # same id, so the run plans against the ledger as a real one would (it does
                    # not take it for an integration deleted on the platform).
                    sim.state.add_integration(
                        _id=known[spec.name],
                        externalPlatform=spec.platform or spec.name,
                        groupId=spec.group,
                        authorId=spec.author,
                    )
            api = replace(
                config.api,
                base_url=sim.base_url,
                client_id=DEMO_CLIENT_ID,
                client_secret=Secret(DEMO_CLIENT_SECRET),
                company_id=None,
            )
            event(f"simulating: API {sim.base_url}, ledger copy {copy}")
            yield replace(config, api=api, ledger_url=Secret(f"sqlite:///{copy}"))


def _ledger_ids(path: Path) -> dict[str, str]:
    """Integration name -> platform id, as the copied ledger knows them (none if it has no table)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        try:
            rows = conn.execute("SELECT name, api_id FROM integrations WHERE api_id IS NOT NULL").fetchall()
        except sqlite3.Error:
            return {}
    return {str(name): str(api_id) for name, api_id in rows}
