"""The official OpenAPI documents (facts-only extract) as a referee for tests.

``referee.component("bulk", "ImportExternalStatisticsDTO")`` and
``referee.response("bulk", "/api/v2/bulk/operations", "get", 200)`` give jsonschema
validators whose ``$ref``s resolve inside the official document.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

FACTS = Path(__file__).with_name("facts.json")


@cache
def facts() -> dict[str, Any]:
    """The extract, as data."""
    return json.loads(FACTS.read_text("utf-8"))  # type: ignore[no-any-return]


def _uri(doc: str) -> str:
    return f"urn:360learning:{doc}-api"


@cache
def _registry() -> Registry:
    return Registry().with_resources(
        (_uri(name), Resource.from_contents(doc, default_specification=DRAFT202012))
        for name, doc in facts().items()
    )


def _validator(doc: str, schema: dict[str, Any]) -> Draft202012Validator:
    # Local "#/components/..." refs resolve against the document the schema came from.
    resolver_schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return Draft202012Validator(
        resolver_schema,
        registry=_registry(),
        format_checker=FormatChecker(),
        _resolver=_registry().resolver(base_uri=_uri(doc)),
    )


def component(doc: str, name: str) -> Draft202012Validator:
    """A validator for ``components.schemas[name]`` of the ``bulk`` or ``core`` document."""
    return _validator(doc, {"$ref": f"#/components/schemas/{name}"})


def request_body(doc: str, path: str, method: str) -> Draft202012Validator:
    """A validator for the JSON request body of an endpoint."""
    op = facts()[doc]["paths"][path][method]
    return _validator(doc, op["requestBody"]["content"]["application/json"]["schema"])


def response(doc: str, path: str, method: str, status: int) -> Draft202012Validator | None:
    """A validator for an endpoint's JSON response of that status, or None when it has no body."""
    op = facts()[doc]["paths"][path][method]
    declared = op["responses"].get(str(status))
    if declared is None:
        raise KeyError(f"{method.upper()} {path} declares no {status} response")
    content = declared.get("content", {}).get("application/json")
    if content is None:
        return None
    return _validator(doc, content["schema"])
