"""The YAML document of a config: parsed once with node positions, ``${VAR}`` interpolated.

``parse`` turns the text into plain data while keeping the node tree, so that every later problem
can be located as ``FILE:LINE:COL``; the ``Document`` collects those problems, and the warnings
(a secret written in the file, an API variable unset when ``offline``). Duplicate keys and unset
variables are found here, YAML syntax errors end the parse at once.

A config of several files (``files``) is one ``Document`` per file: the main file's holds the
others as ``parts`` and locates a path in the file that declares it (``own``: a source, an
integration or a mapping declared in a part), or where it is written when the checked data took
it from elsewhere (``alias``: a field rule from a mapping, an option from ``defaults:``), with a
note naming the use. The checks and the build ask the main file's Document and never need to
know which file said what.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, TypeGuard
from urllib.parse import urlsplit

import yaml

from syncer.errors import ConfigError, Problem

_STR_TAG = "tag:yaml.org,2002:str"
_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")

MAX_CONFIG_BYTES = 1_000_000
"""A config file larger than this is refused (a config is a few kilobytes: is it the right file?)."""
MAX_VALUES = 100_000
"""Values a config may hold once its YAML aliases are expanded: an alias bomb stops here."""
MAX_DEPTH = 100
"""Nesting a config may have (it needs about 6): deeper YAML is refused before it exhausts the stack."""
_FLOAT_TAG = "tag:yaml.org,2002:float"

NodePath = tuple[str | int, ...]
"""Where a value sits in the document: mapping keys and list indexes from the root."""

OFFLINE_VARIABLES: frozenset[NodePath] = frozenset(
    {("api", "base_url"), ("api", "client_id"), ("api", "client_secret"), ("api", "company_id")}
)
"""Values only a call to the API uses: offline (``syncer validate``), an unset variable there is a warning."""


def parse(
    file: str, text: str, env: Mapping[str, str], *, offline: bool = False, part: bool = False
) -> tuple[Document, Any]:
    """The document and its data, with ``${VAR}`` taken from ``env``; raise ConfigError on bad YAML.

    With ``offline`` an unset variable in one of the ``OFFLINE_VARIABLES`` is a warning, not a
    problem: its value stays the ``${VAR}`` text, which nothing offline uses. ``part``: the file
    is a part file of a config of several files (``files``), which only its messages say.
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError.single(
            file,
            1,
            1,
            f"the config is {len(text):,} characters; configs over {MAX_CONFIG_BYTES:,} are refused",
        )
    try:
        loader = yaml.SafeLoader(text)  # refuses control characters and NUL bytes at once
    except yaml.reader.ReaderError as exc:
        at_line, at_col = _text_position(text, exc.position)
        raise ConfigError.single(
            file,
            at_line,
            at_col,
            f"invalid YAML: character {exc.character!r} is not allowed (is it a text file?)",
        ) from exc
    try:
        _check_depth(file, text)
        root = loader.get_single_node()
        if root is None:
            expected = (
                "the file is empty: a part file declares sources:, integrations: or mappings: "
                "(delete it if it has nothing to declare)"
                if part
                else "the config is empty: expected `version: 1`, api, sources..."
            )
            raise ConfigError.single(file, 1, 1, expected)
        _check_aliases(file, root)
        doc = Document(file, text, root, offline=offline)
        doc.check_duplicate_keys(root, ())
        doc.check_written_secrets()
        doc.interpolate(root, (), env)
        data = _construct(file, loader, root)
        doc.problems += _non_finite_numbers(file, root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError.single(file, line, col, f"invalid YAML: {reason}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError.single(file, None, None, f"invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return doc, data


class Document:
    """The parsed YAML with its node tree: locates paths and collects problems."""

    def __init__(self, file: str, text: str, root: yaml.Node, *, offline: bool = False) -> None:
        self.file = file
        self.text = text
        self.root = root
        self.offline = offline
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        # Values that are one ``${VAR}`` and nothing else (path -> VAR): typed by the schema later.
        self.variables: dict[NodePath, str] = {}
        self._reported: set[NodePath] = set()  # paths already wrong: no second message beneath them
        # A config of several files: the part files' Documents, the declarations each owns
        # (("sources", NAME) -> its Document) and the paths of the checked data written elsewhere
        # (path -> where it is written, and the note naming the use).
        self.parts: list[Document] = []
        self._owners: dict[NodePath, Document] = {}
        self._aliases: dict[NodePath, tuple[NodePath, str]] = {}
        # Courses' or stats' fields completed by a mapping (their path -> the mapping's name).
        self.mapping_uses: dict[NodePath, str] = {}

    # -- several files
    def own(self, declaration: NodePath, part: Document) -> None:
        """Locate ``declaration`` (``("sources", NAME)``...) and every path beneath it in ``part``."""
        self._owners[declaration] = part

    def alias(self, path: NodePath, written: NodePath, note: str) -> None:
        """Locate ``path`` and beneath at ``written`` (a mapping's rule, a default), with ``note``."""
        self._aliases[path] = (written, note)

    def mute(self, path: NodePath) -> None:
        """Report nothing more at or beneath ``path`` (an earlier problem explains it)."""
        doc, written, _ = self._locate(path)
        doc._reported.add(written)

    def _locate(self, path: NodePath) -> tuple[Document, NodePath, str]:
        """The Document where ``path`` is written, its path there, and a note naming its use."""
        note = ""
        for size in range(len(path), 0, -1):
            found = self._aliases.get(path[:size])
            if found is not None:
                path, note = (*found[0], *path[size:]), found[1]
                break
        return self._owners.get(path[:2], self), path, note

    def file_of(self, path: NodePath) -> str:
        """The file where the value at ``path`` is written."""
        return self._locate(path)[0].file

    def all_problems(self) -> list[Problem]:
        """The problems of every file, the main file's first, each file's in order of position."""
        return _in_order([self, *self.parts], "problems")

    def all_warnings(self) -> list[Problem]:
        """The warnings of every file, in the same order as ``all_problems``."""
        return _in_order([self, *self.parts], "warnings")

    # -- positions
    def _walk(self, path: NodePath) -> tuple[yaml.Node, yaml.Node | None]:
        node, key_node = self.root, None
        for step in path:
            found = _child(node, step)
            if found is None:
                break
            key_node, node = found
        return node, key_node

    def position(self, path: NodePath, *, key: bool = False) -> tuple[int, int]:
        """1-based line and column of the value (or, with ``key``, the key) at ``path``."""
        doc, path, _ = self._locate(path)
        return doc._position(path, key=key)

    def _position(self, path: NodePath, *, key: bool = False) -> tuple[int, int]:
        node, key_node = self._walk(path)
        mark = (key_node if key and key_node is not None else node).start_mark
        return mark.line + 1, mark.column + 1

    def node_at(self, path: NodePath) -> yaml.Node | None:
        """The YAML node at ``path``, or None when the document has no such path."""
        doc, path, _ = self._locate(path)
        node = doc.root
        for step in path:
            found = _child(node, step)
            if found is None or found[1] is None:
                return None
            node = found[1]
        return node

    def where(self, path: NodePath, *, key: bool = True) -> str:
        """``FILE:LINE:COL`` of the declaration at ``path``, for later stages' messages.

        A path the data took from a mapping or from ``defaults:`` is where it is written,
        followed by the note naming its use: ``FILE:LINE:COL (used by integrations.acme.stats at
        FILE:LINE:COL)``.
        """
        doc, path, note = self._locate(path)
        line, col = doc._position(path, key=key)
        return f"{doc.file}:{line}:{col}" + (f" ({note})" if note else "")

    def raw_map(self, path: NodePath) -> dict[str, Any] | None:
        """A ``map`` transform keyed by the text the user wrote (YAML would turn `yes` into True)."""
        doc, path, _ = self._locate(path)
        node, _ = doc._walk(path)
        if not isinstance(node, yaml.MappingNode):
            return None
        loader = yaml.SafeLoader("")
        try:
            return {str(k.value): loader.construct_object(v, deep=True) for k, v in node.value}
        finally:
            loader.dispose()

    # -- problems
    def reported(self, path: NodePath) -> bool:
        """True when a problem was already reported at or above ``path``."""
        doc, written, _ = self._locate(path)
        # ("sources",) and above: in any file (a part's own `sources:` may be the wrong one), but
        # a part file that is wrong as a whole says nothing about the others.
        docs = [doc] if len(written) >= 2 else [self, *self.parts]
        if any(written[: len(p)] == p for d in docs for p in d._reported if p or d is doc):
            return True
        # Taken from a mapping or a default: a problem of its use (its fields muted) counts too.
        user = self._owners.get(path[:2], self)
        return written != path and any(path[: len(p)] == p for p in user._reported)

    def add(self, path: NodePath, message: str, *, key: bool = False, mute: bool = True) -> None:
        """Record a problem at ``path`` unless a problem was already reported at or above it.

        In the file where ``path`` is written; ``path`` taken from a mapping or ``defaults:`` is
        reported where it is written, its message followed by the note naming the use.
        """
        if self.reported(path):
            return
        doc, path, note = self._locate(path)
        line, col = doc._position(path, key=key)
        message += f" ({note})" if note else ""
        doc.problems.append(Problem(doc.file, line, col, f"{label(path)}: {message}"))
        if mute:
            doc._reported.add(path)

    def warn(self, path: NodePath, message: str, *, key: bool = False) -> None:
        """Record a warning at the value (or, with ``key``, the key) at ``path``: the config works,
        but should change."""
        doc, path, _ = self._locate(path)
        line, col = doc._position(path, key=key)
        doc.warnings.append(Problem(doc.file, line, col, f"{label(path)}: {message}"))

    # -- structure
    def check_written_secrets(self) -> None:
        """Warn about a client secret, or a database password, written in the file instead of ``${VAR}``."""
        secret = self.node_at(("api", "client_secret"))
        if _plain_text(secret) and "${" not in secret.value:
            self.warn(
                ("api", "client_secret"),
                "the secret is written in the config; keep it in the environment: "
                "client_secret: ${L360_CLIENT_SECRET}",
            )
        urls: list[tuple[NodePath, str]] = [(("ledger",), "ledger: ${SYNCER_LEDGER_URL}")]
        sources = self.node_at(("sources",))
        if isinstance(sources, yaml.MappingNode):
            urls += [
                (("sources", str(k.value), "sql", "url"), "url: ${WAREHOUSE_URL}") for k, _ in sources.value
            ]
        for path, advice in urls:
            node = self.node_at(path)
            if not _plain_text(node):
                continue
            try:
                password = urlsplit(node.value).password
            except ValueError:
                continue  # not a URL: the checks say so
            if password and "${" not in password:
                self.warn(
                    path,
                    "the URL holds a password written in the config; keep it in the environment: "
                    f"{advice}, or ${{VAR}} in place of the password",
                )
        hooks = self.node_at(("notify",))
        for i in range(len(hooks.value) if isinstance(hooks, yaml.SequenceNode) else 0):
            node = self.node_at(("notify", i, "url"))
            if _plain_text(node) and "${" not in node.value and _holds_token(node.value):
                self.warn(
                    ("notify", i, "url"),
                    "the webhook URL holds a token written in the config; keep it in the "
                    "environment: url: ${SLACK_WEBHOOK_URL}",
                )

    def check_duplicate_keys(self, node: yaml.Node, path: NodePath) -> None:
        """YAML keeps the last of two equal keys silently; a config must not say a thing twice."""
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in node.value:
                name = str(k.value)
                if name in seen and name != "<<":
                    line, col = k.start_mark.line + 1, k.start_mark.column + 1
                    self.problems.append(
                        Problem(self.file, line, col, f"{label((*path, name))}: duplicate key")
                    )
                seen.add(name)
                self.check_duplicate_keys(v, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.check_duplicate_keys(item, (*path, i))

    def interpolate(
        self, node: yaml.Node, path: NodePath, env: Mapping[str, str], seen: set[int] | None = None
    ) -> None:
        """Replace ``${VAR}``/``${VAR:-default}`` in string scalars (``$${`` is a literal ``${``)."""
        seen = set() if seen is None else seen
        if id(node) in seen:  # an alias: the anchored node was done already
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                self.interpolate(v, (*path, str(k.value)), env, seen)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.interpolate(item, (*path, i), env, seen)
        elif isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG and "$" in node.value:
            whole = _VARIABLE.fullmatch(node.value)
            if whole is not None and whole.group(1) is not None:
                self.variables[path] = whole.group(1)
            node.value = self._substitute(node, path, env)

    def _substitute(self, node: yaml.ScalarNode, path: NodePath, env: Mapping[str, str]) -> str:
        raw_start, raw = node.start_mark.index, self.text[node.start_mark.index : node.end_mark.index]
        cursor = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal cursor
            token, name, default = match.group(0), match.group(1), match.group(2)
            found = raw.find(token, cursor)
            cursor = found + len(token) if found >= 0 else cursor
            if token == "$${":
                return "${"
            if name is not None:
                value = env.get(name)
                if value is not None and (value != "" or default is None):
                    return value
                if default is not None:
                    return default
                webhook = path[:1] == ("notify",) and path[2:] == ("url",)
                if self.offline and (path in OFFLINE_VARIABLES or webhook):
                    # Nothing offline uses it: left as written, and no schema message beneath it.
                    self.warn(
                        path,
                        f"environment variable {name} is not set: validate calls no webhook; "
                        f"plan and apply will need {name}"
                        if webhook
                        else f"environment variable {name} is not set: validate does not call the API; "
                        f"plan and apply will need {name}",
                    )
                    self._reported.add(path)
                    return token
                message = f"environment variable {name} is not set (or write ${{{name}:-default}})"
            else:
                message = (
                    "malformed ${...}: expected ${NAME} or ${NAME:-default} (write $${ for a literal ${)"
                )
            index = raw_start + found if found >= 0 else raw_start
            line = self.text.count("\n", 0, index) + 1
            col = index - self.text.rfind("\n", 0, index)
            self.problems.append(Problem(self.file, line, col, f"{label(path)}: {message}"))
            self._reported.add(path)
            return token

        return _VARIABLE.sub(replace, node.value)


def _in_order(docs: list[Document], kind: str) -> list[Problem]:
    return in_file_order([p for doc in docs for p in getattr(doc, kind)], [doc.file for doc in docs])


def in_file_order(problems: list[Problem], files: list[str]) -> list[Problem]:
    """``problems`` sorted by file (in the order of ``files``; others last), line and column."""
    rank = {file: i for i, file in enumerate(files)}
    return sorted(problems, key=lambda p: (rank.get(p.file, len(files)), p.line or 0, p.column or 0))


def _child(node: yaml.Node, step: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(step):
                return k, v
    elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        return None, node.value[step]
    return None


def label(path: NodePath) -> str:
    """How messages name ``path``: ``integrations.acme.stats``, ``notify[0].url``."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "config"


def is_secret(path: NodePath) -> bool:
    """True for the values that hold a secret: never quoted in a message, left out of the digest."""
    return (
        path[:2] == ("api", "client_secret")
        or path[:1] == ("ledger",)
        or (path[:1] == ("sources",) and path[2:4] == ("sql", "url"))
        or (path[:1] == ("notify",) and path[2:3] == ("url",))  # a webhook's token is in its URL
    )


def _holds_token(url: str) -> bool:
    """A webhook URL whose password, query or (Slack's) path is a credential."""
    try:
        parts = urlsplit(url)
        return bool(parts.password or parts.query or parts.hostname == "hooks.slack.com")
    except ValueError:
        return False  # not a URL: the checks say so


def _plain_text(node: yaml.Node | None) -> TypeGuard[yaml.ScalarNode]:
    """True for a string scalar (what a secret or a URL must be; anything else the schema refuses)."""
    return isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_aliases(file: str, root: yaml.Node) -> None:
    """Refuse a recursive alias, or aliases that expand the document beyond ``MAX_VALUES``.

    An alias is the anchored node itself, shared: the node tree is a graph. Its expanded size is
    counted once per node (post-order, no recursion), so a 300-byte "billion laughs" is refused
    at once instead of being walked, and a node that contains itself is named with its position.
    """
    size: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        key = id(node)
        if closing:
            open_nodes.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in _children(node))
            if size[key] > MAX_VALUES:
                mark = node.start_mark
                raise ConfigError.single(
                    file,
                    mark.line + 1,
                    mark.column + 1,
                    f"YAML aliases expand this value to more than {MAX_VALUES:,} values; "
                    "a config needs far fewer (is it an alias bomb?)",
                )
            continue
        if key in size:
            continue
        open_nodes.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in open_nodes:
                mark = node.start_mark
                raise ConfigError.single(
                    file,
                    mark.line + 1,
                    mark.column + 1,
                    "recursive YAML alias: this value contains an alias of itself",
                )
            if id(child) not in size:
                stack.append((child, False))


def _text_position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of the character at ``index``."""
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


_OPENING = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
            yaml.FlowSequenceStartToken)  # fmt: skip
_CLOSING = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def _check_depth(file: str, text: str) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH``: PyYAML composes nodes recursively, and
    ``[[[[...`` a few thousand deep would end in a RecursionError. The scanner is not recursive."""
    if text.count("[") + text.count("{") + text.count("-") + text.count(":") < MAX_DEPTH:
        return  # cannot be that deep: skip the scan
    scanner = yaml.SafeLoader(text)
    depth = 0
    try:
        while scanner.check_token():
            token = scanner.get_token()  # type: ignore[no-untyped-call]
            if isinstance(token, _OPENING):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = token.start_mark
                    raise ConfigError.single(
                        file,
                        mark.line + 1,
                        mark.column + 1,
                        f"the YAML is nested more than {MAX_DEPTH} levels deep; a config needs far fewer",
                    )
            elif isinstance(token, _CLOSING):
                depth -= 1
    except yaml.YAMLError:
        return  # a syntax error: the parse reports it with its position
    finally:
        scanner.dispose()


def _construct(file: str, loader: yaml.SafeLoader, root: yaml.Node) -> Any:
    """The document's data; a value its tag cannot build (``!!int abc``) is a located problem."""
    try:
        return loader.construct_document(root)
    except (ValueError, TypeError, OverflowError) as exc:
        node = _first_unbuildable(root)
        mark = node.start_mark if node is not None else None
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        value = f" {node.value!r}" if isinstance(node, yaml.ScalarNode) else ""
        raise ConfigError.single(
            file, line, col, f"invalid YAML: cannot read the value{value} as {_tag_name(node)} ({exc})"
        ) from exc


def _scalars(root: yaml.Node) -> list[yaml.ScalarNode]:
    """Every scalar node once, in document order (no recursion: nesting is bounded, aliases shared)."""
    seen: set[int] = set()
    out: list[yaml.ScalarNode] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            out.append(node)
        stack.extend(reversed(_children(node)))
    return sorted(out, key=lambda n: n.start_mark.index)


def _first_unbuildable(root: yaml.Node) -> yaml.Node | None:
    constructor = yaml.constructor.SafeConstructor()
    for node in _scalars(root):
        try:
            constructor.construct_object(node, deep=True)
        except (ValueError, TypeError, OverflowError, yaml.YAMLError):
            return node
    return None


def _tag_name(node: yaml.Node | None) -> str:
    tag = node.tag if node is not None else ""
    return tag.rsplit(":", 1)[-1] if tag.startswith("tag:yaml.org,2002:") else (tag or "its tag")


def _non_finite_numbers(file: str, root: yaml.Node) -> list[Problem]:
    """``.nan``, ``.inf`` and numbers too large for a float (``1e400``): no setting means them."""
    problems = []
    for node in _scalars(root):
        if node.tag != _FLOAT_TAG:
            continue
        value = yaml.constructor.SafeConstructor().construct_yaml_float(node)
        if not math.isfinite(value):
            mark = node.start_mark
            problems.append(
                Problem(file, mark.line + 1, mark.column + 1, f"{node.value!r} is not a finite number")
            )
    return problems
