"""YAML as configs and suites read it: safe tags only, bounded, no duplicate keys.

``yaml.SafeLoader`` never runs code, but a short file can still expand to an
enormous value: nested anchors and aliases (``&a [x, x]``, ``&b [*a, *a]`` ...)
double at every level, so twenty lines make a million items, and a recursive
alias (``&a [*a]``) makes a value that never ends. Before any Python value is
built, the parsed document is measured::

    nodes     every node counted as many times as aliases repeat it  <= MAX_NODES
    depth     nesting of mappings and sequences                      <= MAX_DEPTH
    cycles    an alias inside the node it names                      refused

and the text itself is at most :data:`MAX_BYTES`. A key given twice in one
mapping (two ``train:`` sections) is refused rather than the last one silently
winning; merge keys (``<<: *base``) still override as YAML defines. Floats follow
YAML 1.2 (``1e-3`` is a float, as it is in JSON); everything else is YAML 1.1's
safe schema.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from nervana_lstm.errors import UsageError, short_repr
from nervana_lstm.paths import read_text

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "load_yaml", "read_yaml_file"]

#: the largest YAML text read (a run config is about 1 KB, the largest suite 10 KB)
MAX_BYTES = 1 << 20
#: the most nodes a document may expand to, aliases counted each time they are used
MAX_NODES = 100_000
#: the deepest nesting of mappings and sequences
MAX_DEPTH = 64

_MERGE = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats that refuses duplicate keys while composing."""

    source = "YAML"  # named in messages

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode) or key.tag == _MERGE:
                continue
            ident, line = (key.tag, key.value), key.start_mark.line + 1
            if ident in seen:
                raise UsageError(
                    f"{self.source}: the key {short_repr(key.value)} appears twice in one "
                    f"mapping (lines {seen[ident]} and {line}); each key may appear once"
                )
            seen[ident] = line
        return node


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _measure(root: Node, source: str) -> None:
    """Refuse a document that expands past :data:`MAX_NODES`, nests past :data:`MAX_DEPTH`
    or holds a recursive alias; each distinct node is visited once."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    open_nodes: set[int] = set()
    # an explicit stack: a document nested thousands deep must not exhaust Python's own
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            depths[key] = 1 + max((depths[id(c)] for c in children), default=0)
            if sizes[key] > MAX_NODES:
                raise UsageError(
                    f"{source}: the YAML expands to more than {MAX_NODES:,} values (anchors and "
                    "aliases repeat what they name); write the values out or use fewer aliases"
                )
            if depths[key] > MAX_DEPTH:
                raise UsageError(f"{source}: the YAML nests deeper than {MAX_DEPTH} levels")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise UsageError(
                f"{source}: a YAML alias on line {node.start_mark.line + 1} refers to a value "
                "that contains it (a recursive alias); expected a finite value"
            )
        open_nodes.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise UsageError(
                    f"{source}: a YAML alias on line {child.start_mark.line + 1} refers to a "
                    "value that contains it (a recursive alias); expected a finite value"
                )
            if id(child) not in sizes:
                stack.append((child, False))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def load_yaml(text: str, source: str, *, invalid: str | None = None) -> Any:
    """Parse one YAML document with the limits above; errors are :class:`UsageError`
    naming ``source`` (a file, or ``--set value``). ``invalid`` replaces
    ``"SOURCE is not valid YAML"`` at the start of a syntax error's message."""
    if len(text) > MAX_BYTES:
        raise UsageError(
            f"{source}: the YAML text is {len(text):,} characters; at most {MAX_BYTES:,}"
        )
    loader = _Loader(text)
    loader.source = source
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        message = _one_line(exc)
        if len(message) > 400:
            message = message[:400] + "..."
        raise UsageError(f"{invalid or source + ' is not valid YAML'}: {message}") from None
    except UsageError:
        raise
    except ValueError as exc:  # a value Python refuses to build, e.g. an int of 5000 digits
        reason = str(exc).split(";")[0][:200]  # Python's advice after the ";" is not the user's
        raise UsageError(f"{source}: a value cannot be read: {reason}") from None
    except RecursionError:
        raise UsageError(f"{source}: the YAML nests deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | Path, what: str) -> Any:
    """Read and parse the YAML file ``path``: a regular UTF-8 file of at most :data:`MAX_BYTES`
    (see :mod:`nervana_lstm.paths`), then :func:`load_yaml`."""
    text = read_text(path, what, MAX_BYTES)
    return load_yaml(text, f"{what} {path}")
