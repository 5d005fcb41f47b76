"""The SQLite ledger's lock file: portable (no fcntl import) and refused with a fix when unusable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncer.errors import LedgerUnusableError, LockedError
from syncer.ledger import Ledger
from syncer.ledger.lock import acquire_lock

ROOT = Path(__file__).resolve().parents[2]

# Root ignores file modes unless it gives up the capabilities that override them.
NO_DAC_OVERRIDE = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]


def _unprivileged() -> list[str]:
    """The command prefix under which file modes apply (setpriv as root, nothing otherwise)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file modes cannot be enforced")
    return NO_DAC_OVERRIDE


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.close()


def test_syncer_imports_where_fcntl_is_absent() -> None:
    """Windows has no fcntl: every syncer module, the CLI and the ledger included, still imports."""
    script = (
        "import sys, importlib, warnings\n"
        "sys.modules['fcntl'] = None\n"  # `import fcntl` now raises ImportError, as on Windows
        "warnings.simplefilter('ignore')\n"  # filelock says it falls back to a soft lock here
        "import syncer.cli, syncer.ledger.lock, syncer.ledger\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "print('imported')\n"
    )
    modules = ["syncer.ledger.migrate", "syncer.plan", "syncer.apply", "syncer.refresh", "syncer.report"]
    done = subprocess.run(
        [sys.executable, "-c", script, *modules], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "imported\n"), done.stderr


def test_no_syncer_module_imports_fcntl() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "syncer").rglob("*.py")
        if "import fcntl" in path.read_text("utf-8")
    ]
    assert offenders == []


def test_the_lock_is_exclusive_and_released(ledger: Ledger) -> None:
    with (
        acquire_lock(ledger, ["acme"]),
        pytest.raises(LockedError, match="another syncer run holds the lock"),
    ):
        acquire_lock(ledger, ["acme"])
    with acquire_lock(ledger, ["acme"]):  # released: taken again at once
        pass
    assert Path(str(ledger.engine.url.database) + ".lock").is_file()  # kept: waiters share its inode


def test_a_lock_path_that_is_a_directory_is_a_located_error(ledger: Ledger) -> None:
    lock_path = Path(str(ledger.engine.url.database) + ".lock")
    lock_path.mkdir()
    with pytest.raises(LedgerUnusableError) as info:
        acquire_lock(ledger, ["acme"])
    message = str(info.value)
    assert message.startswith(f"cannot create the lock file {lock_path}: is a directory;"), message
    assert info.value.exit_code == 1


CONFIG = """\
version: 1
api: {base_url: "http://127.0.0.1:9", client_id: demo, client_secret: demo-secret}
ledger: sqlite:///LEDGER
sources:
  catalog: {csv: courses.csv}
integrations:
  acme:
    id: 507f1f77bcf86cd799439011
    courses:
      source: catalog
      fields:
        externalId: course_id
        name: title
        launchUrl: {template: "https://acme.example/{course_id}"}
        defaultLang: {value: en}
        sources: {value: [{name: Acme}]}
        subjects: {value: []}
"""


def test_an_unwritable_lock_file_exits_1_naming_it_and_the_fix(tmp_path: Path) -> None:
    prefix = _unprivileged()
    folder = tmp_path / "ledger"
    folder.mkdir()
    (tmp_path / "courses.csv").write_text("course_id,title\nC1,One\n", "utf-8")
    config = tmp_path / "syncer.yaml"
    config.write_text(CONFIG.replace("LEDGER", str(folder / "syncer.db")), "utf-8")
    Ledger.open(f"sqlite:///{folder / 'syncer.db'}").close()  # a healthy ledger...
    lock_path = folder / "syncer.db.lock"
    lock_path.write_bytes(b"")
    lock_path.chmod(0o000)  # ...whose lock file its user cannot open
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "syncer", "apply", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    uid = os.getuid()
    assert done.stderr.splitlines(keepends=True)[-1] == (
        f"Error: cannot create the lock file {lock_path}: permission denied; make {lock_path} writable "
        f"by the user running syncer (uid {uid}), or remove it (syncer creates it)\n"
    )


def test_a_lock_folder_without_write_permission_names_the_folder(tmp_path: Path) -> None:
    """The lock file's folder is read-only: the message names the folder and the user."""
    prefix = _unprivileged()
    folder = tmp_path / "locked"
    folder.mkdir()
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from syncer.errors import LedgerUnusableError\n"
        "from syncer.ledger.lock import take_file_lock\n"
        "try:\n"
        "    take_file_lock(Path(sys.argv[1]))\n"
        "except LedgerUnusableError as exc:\n"
        "    print(exc)\n"
    )
    folder.chmod(0o555)
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-c", script, str(folder / "syncer.db.lock")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        folder.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"cannot create the lock file {folder / 'syncer.db.lock'}: permission denied; make {folder} "
        f"writable by the user running syncer (uid {os.getuid()}) or move the ledger\n"
    )
