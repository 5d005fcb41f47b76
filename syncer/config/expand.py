"""Reusable mappings and defaults: each integration's courses and stats completed before the checks.

``mappings: {NAME: {fields: {...}, force_new: ...}}`` (in any file of the config) are named
field-rule sets; ``courses:`` or ``stats:`` naming one with ``mapping: NAME`` gets its rules, and
its own ``fields:`` replace the mapping's field by field (a field given in both is the
integration's, wholly). ``defaults: {courses: {...}, stats: {...}}`` (main file only) gives the
options every courses or stats takes unless it sets them; a mapping's ``force_new`` wins over the
default's, the integration's own over both.

The checks then see each integration as if it were written out in full; each value taken from a
mapping or a default is an alias (``Document.alias``): a problem with it is reported where it is
written, with a note naming the integration that uses it, and so is its ``where`` in the model.
"""

from __future__ import annotations

import difflib
from typing import Any

from syncer.config.document import Document, NodePath, label

OBJECTS = ("courses", "stats")
"""What a mapping and ``defaults:`` complete: an integration's courses and statistics."""


def expand(doc: Document, data: Any) -> None:
    """Complete each integration's courses and stats in ``data`` (in place) from its mapping and
    the defaults; record on ``doc`` an unknown mapping (a problem) and an unused one (a warning)."""
    if not isinstance(data, dict) or not isinstance(data.get("integrations"), dict):
        return
    mappings: dict[Any, Any] = data["mappings"] if isinstance(data.get("mappings"), dict) else {}
    defaults: dict[Any, Any] = data["defaults"] if isinstance(data.get("defaults"), dict) else {}
    used: set[str] = set()
    for name, spec in data["integrations"].items():
        if not isinstance(spec, dict):
            continue
        for kind in OBJECTS:
            if not isinstance(spec.get(kind), dict):
                continue
            path: NodePath = ("integrations", str(name), kind)
            spec[kind] = obj = dict(spec[kind])
            chosen = obj.get("mapping")
            if isinstance(chosen, str):
                if isinstance(mappings.get(chosen), dict):
                    used.add(chosen)
                    _use_mapping(doc, path, obj, chosen, mappings[chosen])
                    del obj["mapping"]  # written out: the schema checks the fields of both together
                elif chosen not in mappings:
                    close = difflib.get_close_matches(chosen, [str(m) for m in mappings], n=1)
                    hint = (
                        f"; did you mean {close[0]!r}?"
                        if close
                        else f"; known: {', '.join(str(m) for m in mappings)}"
                        if mappings
                        else "; declare it under mappings:"
                    )
                    doc.add((*path, "mapping"), f"unknown mapping {chosen!r}{hint}")
                    doc.mute((*path, "fields"))  # its fields are incomplete without the mapping
            options = defaults.get(kind)
            for option, value in options.items() if isinstance(options, dict) else ():
                if option not in obj:
                    obj[option] = value
                    doc.alias(
                        (*path, str(option)),
                        ("defaults", kind, str(option)),
                        f"the default for {label(path)} at {doc.where(path)}",
                    )
    for name in mappings:
        if name not in used and not doc.reported(("mappings", str(name))):
            doc.warn(("mappings", str(name)), "no integration's courses or stats uses this mapping", key=True)


def _use_mapping(
    doc: Document, path: NodePath, obj: dict[str, Any], name: str, mapping: dict[str, Any]
) -> None:
    """``obj`` (courses or stats at ``path``) with the rules of mapping ``name`` it does not give."""
    note = f"used by {label(path)} at {doc.where((*path, 'mapping'))}"
    written: NodePath = ("mappings", name)
    rules, own = mapping.get("fields"), obj.get("fields")
    if isinstance(rules, dict) and (own is None or isinstance(own, dict)):
        fields: dict[str, Any] = {}
        for target, rule in rules.items():
            if own is not None and target in own:
                fields[target] = own[target]  # the integration's own rule replaces the mapping's, wholly
                continue
            fields[target] = rule  # the same object: a ${VAR} typed there is typed for every use
            doc.alias((*path, "fields", str(target)), (*written, "fields", str(target)), note)
        obj["fields"] = {**fields, **(own or {})}  # and its own other rules after the mapping's
        doc.mapping_uses[(*path, "fields")] = name
    if "force_new" in mapping and "force_new" not in obj:
        obj["force_new"] = mapping["force_new"]
        doc.alias((*path, "force_new"), (*written, "force_new"), note)
