"""A config of several files: which files, each parsed on its own, and their data merged into one.

CONFIG is a file or a directory. A directory's main file is ``syncer.yaml``; every other ``*.yaml``
file directly in it is a *part file*, read in name order (subdirectories and hidden files are not
read; a ``*.yml`` file is not read either, and a warning says so). The main file's ``include:``
globs, relative to its folder, add part files, in a single-file config too; a file found twice is
read once, a glob that matches no file is a problem located at that glob. A part file declares
only ``sources:``, ``integrations:`` and ``mappings:``, and a name is declared once across all
the files of a config: a second declaration is a problem in both files, each naming the other.

Each file keeps its own ``Document``; the main file's holds the others (``Document.parts``) and
locates each declaration in the file that wrote it (``Document.own``), so that the checks and the
build, which see only the merged data, report every problem as that file's ``FILE:LINE:COL``.
"""

from __future__ import annotations

import difflib
import glob
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from syncer.config.checks import config_schema
from syncer.config.document import Document, NodePath, in_file_order, parse
from syncer.errors import ConfigError, Problem

MAIN_FILE = "syncer.yaml"
"""The main file of a config directory: version, api, ledger, defaults, include..."""
PART_KEYS = ("sources", "integrations", "mappings")
"""What a part file may declare (and ``x-`` keys, ignored, for YAML anchors)."""


def main_file(path: Path) -> Path:
    """The main file of the config at ``path``: a directory's ``syncer.yaml``, else ``path``."""
    return path / MAIN_FILE if path.is_dir() else path


def read_config(path: Path, env: Mapping[str, str], *, offline: bool = False) -> tuple[Document, Any]:
    """Parse every file of the config at ``path``: the main file's Document (holding the part
    files') and the data of all files merged, as one file would hold it.

    Raises ConfigError when a file cannot be read or is not YAML (with the other files' problems
    found so far); the problems of the merged data are recorded on the Document.
    """
    main = main_file(path)
    if path.is_dir() and not main.is_file():
        other = " (found syncer.yml: rename it to syncer.yaml)" if (path / "syncer.yml").is_file() else ""
        raise ConfigError.single(
            str(path),
            None,
            None,
            f"a config directory needs its main file {MAIN_FILE} (version, api, ledger...); "
            f"there is none{other}",
        )
    doc, data = _parse_file(main, env, offline=offline, part=False)
    parts: list[tuple[Document, Any]] = []
    failed: list[Problem] = []
    files = _part_files(doc, data, path)
    for file in files:
        try:
            parts.append(_parse_file(file, env, offline=offline, part=True))
        except ConfigError as exc:
            failed += exc.problems
    merged = merge(doc, data, parts)
    if failed:
        order = [doc.file, *map(str, files)]
        raise ConfigError(in_file_order([*doc.all_problems(), *failed], order))
    return doc, merged


def _parse_file(path: Path, env: Mapping[str, str], *, offline: bool, part: bool) -> tuple[Document, Any]:
    file = str(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError.single(file, None, None, "config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError.single(file, None, None, f"cannot read the config file: {reason}") from exc
    return parse(file, text, env, offline=offline, part=part)


def _part_files(doc: Document, data: Any, path: Path) -> list[Path]:
    """The part files: the directory's ``*.yaml`` (by name), then each ``include:`` glob's matches."""
    main = Path(doc.file)
    seen = {main.resolve()}
    found: list[Path] = []

    def take(file: Path) -> None:
        if file.resolve() not in seen:
            seen.add(file.resolve())
            found.append(file)

    if path.is_dir():
        for file in sorted(path.iterdir()):
            if file.name.startswith(".") or not file.is_file():
                continue
            if file.suffix == ".yaml":
                take(file)
            elif file.suffix == ".yml":
                doc.warnings.append(
                    Problem(
                        str(file),
                        None,
                        None,
                        "not read: the part files of a config directory end in .yaml "
                        "(rename it, or move it out of the directory)",
                    )
                )
    include = data.get("include") if isinstance(data, dict) else None
    folder = main.parent
    for i, pattern in enumerate(include if isinstance(include, list) else ()):
        if not isinstance(pattern, str) or not pattern:
            continue  # the schema says what is wrong with it
        matches = [folder / m for m in sorted(glob.glob(pattern, root_dir=folder, recursive=True))]
        files = [m for m in matches if m.is_file()]
        if not files:
            doc.add(("include", i), f"{pattern!r} matches no file (globs are relative to {folder})")
            continue
        for file in files:
            if file.suffix in (".yaml", ".yml"):
                take(file)
            else:
                doc.add(
                    ("include", i),
                    f"{pattern!r} matches {file}, which is not a .yaml file; narrow it (e.g. teams/*.yaml)",
                )
    if not path.is_dir() and main.name == MAIN_FILE:
        _beside_the_main_file(doc, main, seen)
    return found


def _beside_the_main_file(doc: Document, main: Path, read: set[Path]) -> None:
    """A directory's ``syncer.yaml`` given as a file reads no part file beside it: say so once
    (``syncer apply DIR/syncer.yaml`` would silently leave out the integrations of the others)."""
    unread = [
        f
        for f in sorted(main.parent.glob("*.yaml"))
        if f.is_file() and not f.name.startswith(".") and f.resolve() not in read
    ]
    if unread:
        names = ", ".join(f.name for f in unread[:3]) + (
            f" and {len(unread) - 3:,} more" if len(unread) > 3 else ""
        )
        doc.warnings.append(
            Problem(
                str(main),
                None,
                None,
                f"given as a file, it reads no other file beside it ({names}): to read a config "
                f"directory, give the directory ({main.parent}), or list them in include:",
            )
        )


def merge(doc: Document, data: Any, parts: list[tuple[Document, Any]]) -> Any:
    """The main file's data with each part file's declarations added; ``doc`` holds the parts'
    Documents and locates their declarations, and each problem of a part file's own shape (a key
    that belongs in the main file, a name declared twice) is recorded in its file."""
    merged = dict(data) if isinstance(data, dict) else data
    declared: dict[NodePath, Document] = {}  # (section, NAME) -> the file that declares it
    for section in PART_KEYS:
        if isinstance(merged, dict) and isinstance(merged.get(section), dict):
            merged[section] = dict(merged[section])  # the parts add to a copy
            declared.update({(section, str(name)): doc for name in merged[section]})
    main_name = Path(doc.file).name
    for part, part_data in parts:
        doc.parts.append(part)
        if not isinstance(part_data, dict):
            part.add((), "a part file is a mapping of sources:, integrations: and mappings:")
            continue
        _check_part_keys(part, part_data, main_name)
        skipped: set[NodePath] = set()
        for section in PART_KEYS:
            values = part_data.get(section)
            if section not in part_data:
                continue
            if not isinstance(values, dict) or not values:
                part.add((section,), f"must be a mapping of NAME: {{...}} (got {_kind(values)})")
                continue
            target = merged.setdefault(section, {}) if isinstance(merged, dict) else None
            for name, value in values.items():
                key: NodePath = (section, str(name))
                first = declared.get(key)
                if first is not None:
                    _duplicate(first, part, key)
                    skipped.add(key)
                    continue
                declared[key] = part
                doc.own(key, part)
                if isinstance(target, dict):  # else the main file's own section is wrong: it says so
                    target[name] = value
        doc.variables.update({p: v for p, v in part.variables.items() if p[:2] not in skipped})
    return merged


def _check_part_keys(part: Document, data: dict[Any, Any], main_name: str) -> None:
    main_keys = [k for k in config_schema()["properties"] if k not in PART_KEYS]
    for key in data:
        name = str(key)
        if name in PART_KEYS or name.startswith("x-"):
            continue
        if name in main_keys:
            part.add(
                (name,),
                f"{name} belongs in the main file {main_name}: a part file declares only "
                "sources, integrations and mappings",
                key=True,
            )
            continue
        close = difflib.get_close_matches(name, PART_KEYS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "expected one of: " + ", ".join(PART_KEYS)
        part.add((name,), f"unknown key {name!r} in a part file; {hint}", key=True)


def _duplicate(first: Document, again: Document, key: NodePath) -> None:
    """The same name declared in two files: a problem in each, naming the other's position."""
    what = {"sources": "a source", "integrations": "an integration", "mappings": "a mapping"}[str(key[0])]
    first_at, again_at = first.where(key), again.where(key)
    rule = f"{what}'s name is declared once across the config's files"
    first.add(key, f"declared again at {again_at}; {rule}", key=True, mute=False)
    again.add(key, f"already declared at {first_at}; {rule}", key=True)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an empty mapping"
    if isinstance(value, list):
        return "a list"
    return "nothing" if value is None else repr(value)
