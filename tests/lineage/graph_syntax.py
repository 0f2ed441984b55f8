"""Validators for the exported graph formats: DOT, Mermaid and self-contained HTML.

DOT goes through Graphviz's own parser (`dot`, installed by
scripts/install-test-services.sh) when it is on PATH, and through the strict parser here
otherwise. Mermaid has no offline parser in Python, so its structure is checked line by
line against the flowchart grammar the exporter uses. HTML is parsed with html.parser
and checked for balanced tags, resolvable in-page links and no external assets.
"""

from __future__ import annotations

import html.parser
import re
import shutil
import subprocess

VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


class SyntaxProblem(AssertionError):
    """The text is not valid in its format; the message says where."""


# ---------------------------------------------------------------------------------- DOT


def check_dot(text: str) -> str:
    """Validates DOT with Graphviz if installed, else strictly here; returns which was used."""
    dot = shutil.which("dot")
    if dot is not None:
        result = subprocess.run(
            [dot, "-Tsvg"], input=text, capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0 or "<svg" not in result.stdout:
            raise SyntaxProblem(f"dot rejected the graph: {result.stderr.strip()}")
        if result.stderr.strip():  # Graphviz reports syntax slips as warnings too.
            raise SyntaxProblem(f"dot warned: {result.stderr.strip()}")
        return "graphviz"
    parse_dot(text)
    return "fallback parser"


_DOT_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<arrow>->|--)|(?P<punct>[{}\[\];,=])'
    r"|(?P<id>[A-Za-z_\x80-\uffff][A-Za-z_0-9\x80-\uffff]*|-?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)))",
    re.S,
)


def parse_dot(text: str) -> dict[str, set[str]]:
    """A strict parser for DOT's grammar (no subgraphs or HTML labels); returns nodes/edges.

    Also requires every edge endpoint to be declared as a node first.
    """
    tokens = _dot_tokens(text)
    position = 0

    def peek() -> tuple[str, str]:
        return tokens[position] if position < len(tokens) else ("eof", "")

    def take(kind: str, value: str | None = None) -> str:
        nonlocal position
        actual_kind, actual = peek()
        if actual_kind != kind or (value is not None and actual != value):
            raise SyntaxProblem(
                f"DOT: expected {value or kind} at token {position}, got {actual!r}"
            )
        position += 1
        return actual

    def attribute_lists() -> None:
        while peek() == ("punct", "["):
            take("punct", "[")
            while peek() != ("punct", "]"):
                take_id()
                take("punct", "=")
                take_id()
                if peek() in (("punct", ","), ("punct", ";")):
                    take("punct")
            take("punct", "]")

    def take_id() -> str:
        kind, value = peek()
        if kind not in ("id", "string"):
            raise SyntaxProblem(f"DOT: expected an ID at token {position}, got {value!r}")
        return take(kind)

    nodes: set[str] = set()
    edges: set[str] = set()
    if peek() == ("id", "strict"):
        take("id")
    if take("id") != "digraph":
        raise SyntaxProblem("DOT: the exporter must write a digraph")
    if peek()[0] in ("id", "string"):
        take_id()
    take("punct", "{")
    while peek() != ("punct", "}"):
        kind, value = peek()
        if kind == "id" and value in ("graph", "node", "edge"):
            take("id")
            attribute_lists()
        else:
            first = take_id()
            if peek() == ("punct", "="):
                take("punct", "=")
                take_id()
            elif peek()[0] == "arrow":
                chain = [first]
                while peek()[0] == "arrow":
                    if take("arrow") != "->":
                        raise SyntaxProblem("DOT: a digraph's edges use ->")
                    chain.append(take_id())
                attribute_lists()
                for endpoint in chain:
                    if endpoint not in nodes:
                        raise SyntaxProblem(f"DOT: edge endpoint {endpoint} is not declared")
                edges.add(" -> ".join(chain))
            else:
                if first in nodes:
                    raise SyntaxProblem(f"DOT: node {first} declared twice")
                nodes.add(first)
                attribute_lists()
        if peek() == ("punct", ";"):
            take("punct", ";")
    take("punct", "}")
    if peek()[0] != "eof":
        raise SyntaxProblem("DOT: text after the closing brace")
    return {"nodes": nodes, "edges": edges}


def _dot_tokens(text: str) -> list[tuple[str, str]]:
    tokens = []
    index = 0
    text = text.rstrip()
    while index < len(text):
        match = _DOT_TOKEN.match(text, index)
        if match is None or match.end() == index:
            raise SyntaxProblem(f"DOT: cannot read from {text[index : index + 20]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            kind, value = "string", value[1:-1]
        tokens.append((kind, value))
        index = match.end()
    return tokens


# ------------------------------------------------------------------------------ Mermaid

_MERMAID_ID = r"[A-Za-z][A-Za-z0-9_]*"
_MERMAID_LABEL = r'"[^"]*"'
_MERMAID_NODE = re.compile(
    rf"^  (?P<id>{_MERMAID_ID})(?:\[{_MERMAID_LABEL}\]|\[/{_MERMAID_LABEL}/\])$"
)
_MERMAID_EDGE = re.compile(
    rf"^  (?P<a>{_MERMAID_ID}) -->\|[A-Za-z0-9_.\-]+\| (?P<b>{_MERMAID_ID})$"
)
_MERMAID_CLASSDEF = re.compile(r"^  classDef (?P<name>\w+) fill:#[0-9a-f]{6},stroke:#[0-9a-f]{6}$")
_MERMAID_CLASS = re.compile(rf"^  class (?P<ids>{_MERMAID_ID}(?:,{_MERMAID_ID})*) (?P<name>\w+)$")


def check_mermaid(text: str) -> dict[str, set[str]]:
    """Checks a flowchart's structure: header, node and edge lines, classes; returns the nodes."""
    lines = text.rstrip("\n").split("\n")
    if lines[0] not in ("flowchart LR", "flowchart TD", "graph LR", "graph TD"):
        raise SyntaxProblem(f"Mermaid: the first line must declare a flowchart, got {lines[0]!r}")
    nodes: set[str] = set()
    class_defs: set[str] = set()
    used_classes: list[tuple[str, list[str]]] = []
    edges: set[str] = set()
    for number, line in enumerate(lines[1:], start=2):
        if match := _MERMAID_NODE.match(line):
            if match["id"] in nodes:
                raise SyntaxProblem(f"Mermaid line {number}: node {match['id']} defined twice")
            nodes.add(match["id"])
        elif match := _MERMAID_EDGE.match(line):
            for end in (match["a"], match["b"]):
                if end not in nodes:
                    raise SyntaxProblem(f"Mermaid line {number}: edge to undefined node {end}")
            edges.add(f"{match['a']}->{match['b']}")
        elif match := _MERMAID_CLASSDEF.match(line):
            class_defs.add(match["name"])
        elif match := _MERMAID_CLASS.match(line):
            used_classes.append((match["name"], match["ids"].split(",")))
        else:
            raise SyntaxProblem(f"Mermaid line {number} is not a node, edge or class: {line!r}")
    for name, ids in used_classes:
        if name not in class_defs:
            raise SyntaxProblem(f"Mermaid: class {name} is used but not defined")
        unknown = [i for i in ids if i not in nodes]
        if unknown:
            raise SyntaxProblem(f"Mermaid: class {name} names undefined nodes {unknown}")
    return {"nodes": nodes, "edges": edges}


# --------------------------------------------------------------------------------- HTML


class _StrictHTML(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.external: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attributes(tag, attrs)
        if tag not in VOID_ELEMENTS:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attributes(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise SyntaxProblem(f"HTML: </{tag}> closes {self.stack[-1:] or 'nothing'}")
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def _attributes(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "link", "iframe", "img", "object", "embed"):
            self.external.append(f"<{tag}>")
        for name, value in attrs:
            value = value or ""
            if name == "id":
                if value in self.ids:
                    raise SyntaxProblem(f"HTML: id {value!r} used twice")
                self.ids.add(value)
            if name in ("href", "src", "xlink:href"):
                if value.startswith("#"):
                    self.links.append(value[1:])
                else:
                    self.external.append(f"{tag} {name}={value}")
            if name == "style" and "url(" in value:
                self.external.append(f"{tag} style url(...)")


def check_html(text: str) -> dict[str, object]:
    """Parses a page strictly: balanced tags, in-page links resolve, nothing external."""
    if not text.lstrip().lower().startswith("<!doctype html>"):
        raise SyntaxProblem("HTML: missing <!DOCTYPE html>")
    parser = _StrictHTML()
    parser.feed(text)
    parser.close()
    if parser.stack:
        raise SyntaxProblem(f"HTML: unclosed elements {parser.stack}")
    dangling = sorted(set(parser.links) - parser.ids)
    if dangling:
        raise SyntaxProblem(f"HTML: links to missing ids {dangling}")
    if parser.external:
        raise SyntaxProblem(f"HTML: external references {parser.external}")
    for match in re.finditer(r"url\(([^)]*)\)", text):
        if not match.group(1).startswith("#"):
            raise SyntaxProblem(f"HTML: external url({match.group(1)})")
    if re.search(
        r"\b(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text.replace("http://www.w3.org/2000/svg", "")
    ):
        raise SyntaxProblem("HTML: refers to a network address")
    return {"ids": parser.ids, "text": " ".join(parser.text)}
