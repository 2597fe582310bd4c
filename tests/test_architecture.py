"""The dependency rule of docs/architecture.md, checked on every import in src/ragtune, function-level
imports included (they hide cycles from Python, not from a reader)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ragtune"

# Layers, top to bottom, by top-level name (a module or a subpackage): a module imports from its own
# layer or below, never above; import cycles between modules are refused separately.
LAYERS = [
    {"cli", "api"},  # entry: the CLI is a thin layer over the Python API
    {"cluster"},  # Kubeflow TrainJobs: may import the train stage, never the reverse
    {"prepare", "train", "evaluate", "serving", "report"},  # stages: each takes its config section
    {"zero_label", "negatives"},  # what the stages share: synthetic queries and the teacher, hard negatives
    {"retrieval", "io"},  # encoding, ranking, metrics; reading inputs, writing outputs
    {"config", "errors", "console"},  # foundation
]
STAGES = LAYERS[2]
# Edges between different stages, or up the layers, that are allowed, each with its reason.
ALLOWED = {
    ("config", "train"): "config lists the losses and their help; train/losses.py is a leaf (imports only errors)",
}
NEVER = {("serving", "train"): "serving never imports training", ("train", "cluster"): "train never imports cluster"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every ragtune module `path` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ragtune"):
            base = node.module.removeprefix("ragtune").lstrip(".")
            for alias in node.names:
                name = f"{base}.{alias.name}" if base else alias.name
                found.add(name if name in known else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("ragtune.") for a in node.names if a.name.startswith("ragtune.")}
    return found & known


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in SRC.rglob("*.py") if module_name(p)}
    return {name: imports_of(path, set(paths)) - {name} for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return [*path[path.index(dep) :], dep] if dep in path else [node, dep]
            if dep not in state and (cycle := visit(dep, [*path, dep])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def top(name: str) -> str:
    return name.split(".")[0]


def layer_breaks(graph: dict[str, set[str]]) -> list[str]:
    level = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    breaks = []
    for a, deps in sorted(graph.items()):
        for b in sorted(deps):
            ta, tb = top(a), top(b)
            if ta == tb or (ta, tb) in ALLOWED:
                continue
            if level[tb] < level[ta] or (ta in STAGES and tb in STAGES):
                breaks.append(f"{a} -> {b}")
    return breaks


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Top-level names `start` reaches, not counting the ALLOWED edges (each leads to a leaf module)."""
    seen, todo = set(), [name for name in graph if top(name) == start]
    while todo:
        node = todo.pop()
        for dep in graph.get(node, ()):
            if dep not in seen and (top(node), top(dep)) not in ALLOWED:
                seen.add(dep)
                todo.append(dep)
    return {top(name) for name in seen}


def test_every_module_has_a_layer():
    placed = set().union(*LAYERS)
    assert {top(name) for name in import_graph()} == placed


def test_no_import_cycle_even_through_function_level_imports():
    assert find_cycle(import_graph()) is None


def test_imports_only_go_down_the_layers():
    assert layer_breaks(import_graph()) == []


def test_allowed_edges_lead_to_leaves():
    graph = import_graph()
    assert graph["train.losses"] <= {"errors"}


def test_what_must_never_depend_on_what():
    graph = import_graph()
    assert [why for (a, b), why in NEVER.items() if b in reachable(graph, a)] == []


def test_the_checks_can_fail():
    cyclic = {"api": {"cluster.kubeflow"}, "cluster.kubeflow": {"cluster.trainjob"}, "cluster.trainjob": {"api"}}
    assert find_cycle(cyclic) == ["api", "cluster.kubeflow", "cluster.trainjob", "api"]
    assert layer_breaks({"errors": {"cli"}, "cli": set()}) == ["errors -> cli"]
    assert layer_breaks({"train.run": {"serving.feast"}, "serving.feast": set()}) == ["train.run -> serving.feast"]
    assert layer_breaks({"train.run": {"cluster.kubeflow"}, "cluster.kubeflow": set()}) == [
        "train.run -> cluster.kubeflow"
    ]
    assert reachable({"serving.feast": {"io.data"}, "io.data": {"train.run"}}, "serving") == {"io", "train"}


MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def oversized(paths: list[Path]) -> list[str]:
    """Modules over MAX_MODULE_LINES and functions over MAX_FUNCTION_LINES: each must read in one sitting."""
    found = []
    for path in paths:
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            found.append(f"{path.name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{path.name}:{node.lineno} {node.name}: {lines} lines")
    return found


def test_every_module_and_function_reads_in_one_sitting(tmp_path):
    assert oversized(sorted(SRC.rglob("*.py"))) == []
    long = tmp_path / "long.py"
    long.write_text("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    assert oversized([long]) == ["long.py:1 f: 61 lines"]
