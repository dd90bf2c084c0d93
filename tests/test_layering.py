"""The package's imports follow its layers (ARCHITECTURE.md), read from its own source.

The import graph is built from every module's AST -- module-level, function-level and
``TYPE_CHECKING`` imports alike, since each is a dependency a reader has to know about -- and
checked against the layer table below: a module may import its own layer and the layers under
it, never one above. A cycle between modules at import time (module-level imports outside
``TYPE_CHECKING``) fails too, because it only works while the import order happens to allow it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "otel_llm"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Names, settings, span reading, pricing, and generic helpers that know nothing of spans'
    # journeys: everything else may use them.
    (
        "foundation",
        (
            "otel_llm._version",
            "otel_llm._lazy",
            "otel_llm._semconv",
            "otel_llm._dialects_table",
            "otel_llm._cli_types",
            "otel_llm.dialects",
            "otel_llm._setting",
            "otel_llm.settings",
            "otel_llm.text",
            "otel_llm.redaction",
            "otel_llm.call",
            "otel_llm.context",
            "otel_llm.pricing",
            "otel_llm.derive",
            "otel_llm.pricer",
            "otel_llm.background",
            "otel_llm.httpserver",
            "otel_llm.policies",
        ),
    ),
    # Recording what was derived: Prometheus and OTel instruments, the exposition server.
    ("metrics", ("otel_llm.metrics", "otel_llm.exposition")),
    # In the application's process: spans made (instrumentation, llm_call) and priced.
    (
        "processor",
        (
            "otel_llm.processor",
            "otel_llm.tracecost",
            "otel_llm.lifecycle",
            "otel_llm.manual",
            "otel_llm.enforcement",
            "otel_llm.localpolicies",
            "otel_llm.instrumentation",
            "otel_llm._configure",
        ),
    ),
    # Out of process: OTLP received, priced, queued and forwarded.
    ("collector", ("otel_llm.collector",)),
    # The log of LLM calls, fed by the processor's exporter or the collector's call sink.
    ("calllog", ("otel_llm.calllog",)),
    # Composition roots: they may wire any of the above together.
    ("cli", ("otel_llm.cli", "otel_llm.__main__", "otel_llm.demo", "otel_llm.policies.cli")),
)
"""Lowest first. A module belongs to the layer of the longest prefix naming it."""

FACADE = "otel_llm"
"""The package root re-exports the public API from every layer, lazily (PEP 562)."""


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    at_import_time: bool
    """Module level and outside ``if TYPE_CHECKING``: runs when the importer is imported."""


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(known: dict[str, Path]) -> Iterator[Import]:
    for name, path in sorted(known.items()):
        tree = ast.parse(path.read_text(), filename=str(path))
        yield from _imports_of(name, path, tree.body, known, at_import_time=True)


def _imports_of(
    name: str, path: Path, body: list[ast.stmt], known: dict[str, Path], *, at_import_time: bool
) -> Iterator[Import]:
    for statement in body:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            for target in _targets(name, path, statement, known):
                yield Import(name, target, statement.lineno, at_import_time)
            continue
        nested_at_import_time = at_import_time
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            nested_at_import_time = False
        if isinstance(statement, ast.If) and _is_type_checking(statement.test):
            yield from _imports_of(name, path, statement.body, known, at_import_time=False)
            yield from _imports_of(
                name, path, statement.orelse, known, at_import_time=at_import_time
            )
            continue
        for child in ast.iter_child_nodes(statement):
            if isinstance(child, ast.stmt):
                yield from _imports_of(
                    name, path, [child], known, at_import_time=nested_at_import_time
                )
            elif isinstance(child, ast.excepthandler):
                yield from _imports_of(
                    name, path, child.body, known, at_import_time=nested_at_import_time
                )


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(
    name: str, path: Path, statement: ast.Import | ast.ImportFrom, known: dict[str, Path]
) -> list[str]:
    if isinstance(statement, ast.Import):
        return [alias.name for alias in statement.names if alias.name.split(".")[0] == FACADE]
    base = statement.module or ""
    if statement.level:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = package[: len(package) - statement.level + 1]
        base = ".".join([*package, base] if base else package)
    if base.split(".")[0] != FACADE:
        return []
    targets = []
    for alias in statement.names:
        submodule = f"{base}.{alias.name}"
        targets.append(submodule if submodule in known else base)
    return targets


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    return rank


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in modules() if name != FACADE and layer_of(name) < 0]
    assert unplaced == [], f"add these modules to LAYERS in {Path(__file__).name}: {unplaced}"


def test_no_import_runs_up_the_layers() -> None:
    known = modules()
    upward = []
    for edge in imports(known):
        if FACADE in (edge.importer, edge.imported):
            continue
        importer, imported = layer_of(edge.importer), layer_of(edge.imported)
        if imported > importer:
            upward.append(
                f"{edge.importer}:{edge.line} ({LAYERS[importer][0]}) imports "
                f"{edge.imported} ({LAYERS[imported][0]})"
            )
    assert upward == []


def test_no_import_cycle_between_modules() -> None:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for edge in imports(known):
        if edge.at_import_time and edge.imported != edge.importer:
            graph[edge.importer].add(edge.imported)
    cycles = _cycles(graph)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            # The package root is imported first by every submodule import; it is the facade,
            # not a dependency, so edges into it do not make a cycle.
            if successor == FACADE:
                continue
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_what_it_checks(tmp_path: Path) -> None:
    """The graph finds imports in functions, relative imports and TYPE_CHECKING blocks."""
    known = {
        "otel_llm.collector": tmp_path / "collector" / "__init__.py",
        "otel_llm.collector.cli": tmp_path / "collector" / "cli.py",
        "otel_llm.collector.service": tmp_path / "collector" / "service.py",
    }
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from otel_llm.collector import service\n"
        "def f():\n    from . import service\n"
    )
    tree = ast.parse(source)
    cli = "otel_llm.collector.cli"
    found = list(_imports_of(cli, known[cli], tree.body, known, at_import_time=True))
    assert [(edge.imported, edge.at_import_time) for edge in found] == [
        ("otel_llm.collector.service", False),
        ("otel_llm.collector.service", False),
    ]
    assert layer_of("otel_llm.settings") < layer_of("otel_llm.collector.service")
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


LAZY = (
    "genai_prices",
    "grpc",
    "otel_llm.collector",
    "otel_llm.calllog",
    "otel_llm.instrumentation",
)


@pytest.mark.parametrize(
    ("statement", "absent"),
    [
        ("import otel_llm", (*LAZY, "opentelemetry.sdk", "prometheus_client")),
        ("from otel_llm import LLMSpanProcessor", LAZY),
        ("import otel_llm.calllog.auth", ("opentelemetry.sdk", "genai_prices", "grpc")),
    ],
)
def test_imports_load_only_what_they_use(statement: str, absent: tuple[str, ...]) -> None:
    code = (
        f"import sys\n{statement}\n"
        f"print(sorted(m for m in {absent!r} if any(k == m or k.startswith(m + '.') "
        "for k in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]", f"{statement!r} loaded {result.stdout.strip()}"


def test_the_public_names_resolve_lazily() -> None:
    code = (
        "import sys, otel_llm\n"
        "assert 'otel_llm.processor' not in sys.modules\n"
        "missing = [n for n in otel_llm.__all__ if getattr(otel_llm, n, None) is None]\n"
        "print(missing, sorted(set(otel_llm.__all__) - set(dir(otel_llm))))\n"
        # A submodule named like a public name would shadow it once something imports it.
        "import importlib, pkgutil, types\n"
        "for m in pkgutil.walk_packages(otel_llm.__path__, 'otel_llm.'):\n"
        "    m.name.endswith('__main__') or importlib.import_module(m.name)\n"
        "print([n for n in otel_llm.__all__ if isinstance(getattr(otel_llm, n), types.ModuleType)])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.split("\n")[:2] == ["[] []", "[]"]
