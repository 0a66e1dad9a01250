"""The layering of tracker/: no import circle between its modules, and no import hidden inside
a function except to defer a heavy library (issue 16). Read from the source, not imported."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRACKER = REPO / "tracker"

# Function-local imports allowed: heavy libraries loaded on first use, and Django's own rule
# that signal receivers connect in AppConfig.ready().
DEFERRED = {"weasyprint", "fhir", "fhirclient", "pydantic", "keras"}
READY_ONLY = {("tracker/apps.py", "tracker")}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(TRACKER.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imported(node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The tracker modules one import statement loads."""
    names = (
        [a.name for a in node.names]
        if isinstance(node, ast.Import)
        else [f"{node.module}.{a.name}" for a in node.names] + [node.module or ""]
    )
    return {n for n in names if n in known}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges: set[str] = set()
        for node in tree.body:  # module level only: what importing the module runs
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _imported(node, known)
        graph[name] = edges - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_module_of_tracker_imports_one_that_imports_it_back() -> None:
    graph = _graph()
    assert len(graph) >= 25
    assert "tracker.services.enqueue" in graph["tracker.services.runs"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_services_never_import_the_tasks_module() -> None:
    graph = _graph()
    importers = sorted(m for m, edges in graph.items() if "tracker.tasks" in edges)
    assert importers == []


def test_an_import_inside_a_function_only_defers_a_heavy_library() -> None:
    hidden = []
    for path in _modules().values():
        relative = str(path.relative_to(REPO))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    roots = {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom):
                    roots = {(node.module or "").split(".")[0]}
                else:
                    continue
                if roots <= DEFERRED or {(relative, r) for r in roots} <= READY_ONLY:
                    continue
                hidden.append(f"{relative}:{node.lineno} {sorted(roots)}")
    assert hidden == []


def test_the_web_views_do_not_import_the_api_package() -> None:
    graph = _graph()
    assert not {m for m in graph["tracker.web.views"] if m.startswith("tracker.api")}
