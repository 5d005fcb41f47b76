"""Who this run is: an id of its own, syncer's version and the machine's host name.

Logs (every JSON line), alerts and the metrics file name the run the same way, so that the lines
of two runs can be told apart in a log shipper and an alert points at its run's lines. The id is
made once per process, before the ledger is opened (a run that fails to open its ledger still has
one); the ledger's own run number is a different thing (``runs.id``, per ledger).
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass
from functools import cache

from syncer.version import __version__


@dataclass(frozen=True)
class RunInfo:
    """The identity of this process's run."""

    run_id: str
    """12 hex digits, random: unique enough across a fleet's runs, short enough to grep."""
    syncer_version: str
    host: str
    """The machine's host name (in Kubernetes, the pod's name)."""


@cache
def current_run() -> RunInfo:
    """This process's run (made at the first call, the same ever after)."""
    return RunInfo(run_id=uuid.uuid4().hex[:12], syncer_version=__version__, host=socket.gethostname())
