"""The dependency rule of docs/architecture.md, checked on every import in src/ragtune, function-level
imports included (they hide cycles from Python, not from a reader)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ragtune"

# Layers, top to bottom: a module imports from its own layer or below, never above; import cycles are
# refused separately. Stages import each other only along STAGE_EDGES.
LAYERS = [
    {"cli", "api"},  # entry: the CLI is a thin layer over the Python API
    {"kubeflow", "trainjob"},  # the cluster: may import the train stage, never the reverse
    {"prepare", "train", "evaluate", "feast", "report"},  # stages: each takes its config section
    {"callbacks", "heldout", "averaging", "modelcard", "progress", "zero_label", "negatives", "mining", "teacher",
     "synthetic", "llm", "checkpoints", "metrics", "embeddings", "onnx_backend"},  # parts the stages are made of
    {"config", "losses", "data", "prepared", "models", "distributed", "outputs", "errors", "console"},  # foundation
]  # fmt: skip
STAGES = LAYERS[2]
STAGE_EDGES = {
    ("prepare", "evaluate"): "the judged queries of a split (evaluation_qrels)",
    ("feast", "evaluate"): "--via-feast judges the served rankings on a split (evaluation_qrels)",
}
NEVER = {("feast", "train"): "serving never imports training", ("train", "kubeflow"): "train never imports cluster"}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every ragtune module `path` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "ragtune":
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ragtune."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("ragtune.")}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    return {name: imports_of(SRC / f"{name}.py", modules) - {name} for name in modules}


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


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def layer_breaks(graph: dict[str, set[str]]) -> list[str]:
    level = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    return [
        f"{a} -> {b}"
        for a, deps in sorted(graph.items())
        for b in sorted(deps)
        if level[b] < level[a] or (a in STAGES and b in STAGES and (a, b) not in STAGE_EDGES)
    ]


def test_every_module_has_a_layer():
    placed = set().union(*LAYERS)
    assert set(import_graph()) == placed, set(import_graph()) ^ placed


def test_no_import_cycle_even_through_function_level_imports():
    assert find_cycle(import_graph()) is None


def test_imports_only_go_down_the_layers():
    assert layer_breaks(import_graph()) == []


def test_what_must_never_depend_on_what():
    graph = import_graph()
    assert [why for (a, b), why in NEVER.items() if b in reachable(graph, a)] == []


def test_the_checks_can_fail():
    cyclic = {"api": {"kubeflow"}, "kubeflow": {"trainjob"}, "trainjob": {"api"}, "errors": set()}
    assert find_cycle(cyclic) == ["api", "kubeflow", "trainjob", "api"]
    assert layer_breaks({"errors": {"cli"}, "cli": set()}) == ["errors -> cli"]
    assert layer_breaks({"train": {"feast"}, "feast": set()}) == ["train -> feast"]
    assert layer_breaks({"train": {"kubeflow"}, "kubeflow": set()}) == ["train -> kubeflow"]
