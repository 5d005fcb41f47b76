"""A child process for the lock tests: ``python -m tests.postgres.holder URL TIMEOUT NAME...``.

It opens the ledger and takes the run locks of the named integrations, then reports on stdout
(``locked <time>`` or ``refused <exit code> <message>``) and holds them until its stdin closes
(or it is killed), then prints ``released <time>``. The tests drive it with pipes, never sleeps.
"""

from __future__ import annotations

import sys
import time

from syncer.errors import LockedError
from syncer.ledger import Ledger
from syncer.ledger.lock import acquire_lock
from syncer.progress import configure_logging


def main(argv: list[str]) -> int:
    """Take the locks, report, hold until stdin closes."""
    url, timeout, names = argv[0], float(argv[1]), argv[2:]
    configure_logging("text")  # "waiting up to ... for the lock" goes to stderr
    ledger = Ledger.open(url)
    try:
        run_id = ledger.start_run("apply")
        try:
            lock = acquire_lock(ledger, names, timeout=timeout, run_id=run_id)
        except LockedError as exc:
            print(f"refused {exc.exit_code} {exc}", flush=True)
            return exc.exit_code
        print(f"locked {time.time()!r}", flush=True)
        sys.stdin.read()  # hold until the test closes our stdin
        lock.release()
        print(f"released {time.time()!r}", flush=True)
        return 0
    finally:
        ledger.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
