"""Make the facts-only extract of the official OpenAPI documents that the tests use as referee.

The extract keeps types, enums, patterns, limits, required lists, parameters and response
shapes of the endpoints syncer and its simulator use, and drops all prose (descriptions,
examples, titles, summaries). The OAuth scope an operation requires is written in its prose
("Required OAuth scope: `courses:read`."); it is a fact, kept as the operation's ``scopes``
list (empty for the token endpoint). The extract lets the test suite run without ``../shared``.

    python scripts/extract_openapi.py            # rewrite tests/openapi/facts.json
    python scripts/extract_openapi.py --check    # exit 1 when the extract no longer matches
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SHARED = ROOT.parent / "shared" / "reference" / "openapi"
OUT = ROOT / "tests" / "openapi" / "facts.json"
# The simulator validates requests with the same facts; it ships inside the package.
COPIES = (OUT, ROOT / "syncer" / "simulator" / "openapi.json")

PATHS = {
    "bulk": [
        "/api/v2/bulk/integrations/{integrationId}/courses",
        "/api/v2/bulk/integrations/{integrationId}/stats",
        "/api/v2/bulk/operations/{bulkOperationId}",
        "/api/v2/bulk/operations/{bulkOperationId}/results",
        "/api/v2/bulk/operations",
    ],
    "core": [
        "/api/v2/oauth2/token",
        "/api/v2/integrations",
        "/api/v2/integrations/{integrationId}",
        "/api/v2/integrations/{integrationId}/courses/{externalId}",
        "/api/v2/courses",
        "/api/v2/courses/stats",
        "/api/v2/courses/{courseId}/archive",
        "/api/v2/users",
        "/api/v2/users/{userId}",
        "/api/v2/groups/{groupId}",
    ],
}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
SCOPE = re.compile(r"Required OAuth scopes?:([^\n]*)")
PROSE = {
    "description",
    "example",
    "examples",
    "title",
    "summary",
    "externalDocs",
    "tags",
    "operationId",
    "security",
    "deprecated",
}


def strip(node: Any, names: bool = False) -> Any:
    """Drop prose keys and vendor extensions, recursively.

    ``names``: the dict maps property names to schemas (``properties``), so a property called
    ``description`` or ``title`` is a fact to keep, not prose.
    """
    if isinstance(node, dict):
        return {
            k: strip(v, names=(k == "properties" and not names))
            for k, v in node.items()
            if names or (k not in PROSE and not k.startswith("x-"))
        }
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def refs(node: Any, found: set[str]) -> None:
    """Collect the component schema names a node refers to."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for v in node.values():
            refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


def scopes(operation: dict[str, Any]) -> list[str]:
    """The OAuth scopes an operation's description requires (``Required OAuth scope: `x`.``)."""
    found = SCOPE.search(operation.get("description", ""))
    return re.findall(r"`([^`]+)`", found.group(1)) if found else []


def extract_path(item: dict[str, Any]) -> dict[str, Any]:
    """The facts of one path item, each operation with its ``scopes``."""
    out = strip(item)
    for method, operation in item.items():
        if method in METHODS:
            out[method]["scopes"] = scopes(operation)
    return out


def extract_doc(doc: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """The facts of the named paths and every component schema they reach."""
    out_paths = {p: extract_path(doc["paths"][p]) for p in paths}
    schemas = doc["components"]["schemas"]
    wanted: set[str] = set()
    refs(out_paths, wanted)
    done: set[str] = set()
    while wanted - done:
        name = sorted(wanted - done)[0]
        done.add(name)
        refs(schemas[name], wanted)
    return {
        "openapi": doc.get("openapi"),
        "paths": out_paths,
        "components": {"schemas": {n: strip(schemas[n]) for n in sorted(done)}},
    }


def build(shared: Path) -> dict[str, Any]:
    """The whole extract, from the official documents in ``shared``."""
    return {
        name: extract_doc(json.loads((shared / f"{name}-api.json").read_text("utf-8")), paths)
        for name, paths in PATHS.items()
    }


def render(facts: dict[str, Any]) -> str:
    """The extract as stable text."""
    return json.dumps(facts, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write or check the extract."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    args = parser.parse_args(argv)
    if not args.shared.is_dir():
        print(f"extract_openapi: {args.shared} not found; nothing to compare", file=sys.stderr)
        return 0
    text = render(build(args.shared))
    if args.check:
        stale = [p for p in COPIES if not p.is_file() or p.read_text("utf-8") != text]
        for path in stale:
            print(
                f"{path.relative_to(ROOT)} no longer matches {args.shared}: run "
                "python scripts/extract_openapi.py",
                file=sys.stderr,
            )
        if stale:
            return 1
        print("extract_openapi: the facts extracts match the official documents")
        return 0
    for path in COPIES:
        path.write_text(text, "utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
