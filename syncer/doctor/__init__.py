"""Stage after refresh, the doctor: can syncer run with this config, here, now, and if not, why.

It owns ``syncer doctor``'s checks, each returning data (a ``Check``: a name, a status among
ok/warn/fail/skip, what was found and the fix), in order: the config, its sources' first rows,
the ledger (reachable, writable, at the schema head; never migrated), the API host, the
credentials, every scope syncer needs (probed without writing: docs/doctor.md), each
integration (found, or its group and author there to create it) and the limits. It reads from
every stage before it and writes nothing anywhere; ``report/doctor.py`` renders its lines and
the CLI turns a failure into exit 1.
"""

from __future__ import annotations

from syncer.doctor.checks import Check as Check
from syncer.doctor.checks import CheckStatus as CheckStatus
from syncer.doctor.checks import DoctorReport as DoctorReport
from syncer.doctor.run import run_doctor as run_doctor

__all__ = ["Check", "CheckStatus", "DoctorReport", "run_doctor"]
