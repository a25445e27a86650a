"""The package's architecture, checked from its imports (every `import`, also those inside functions): no import
cycle between files or between folders, and every folder imports only folders on lower floors. A new import
that climbs (say, data/ importing train/) fails here with the files that make it."""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "myllm_mc"

# From the ground up; a folder (or top-level module) may import any folder on a lower floor, never one on its own
# floor or above. cli.py loads the stages by name, so it imports nothing here.
FLOORS = [
    ["errors", "jsonl"],
    ["locking", "config"],
    ["plan", "parallel"],
    ["data"],
    ["checkpoint", "tasks"],
    ["model", "preflight", "lora"],
    ["infer"],
    ["evaluate", "interop", "serve"],
    ["train"],
    ["align", "bench"],
    ["cli"],
]


def _module(path: Path) -> str:
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


@lru_cache(maxsize=1)
def _imports() -> dict:
    """{module: {imported module of this package}}, relative imports resolved."""
    files = {_module(f): f for f in PACKAGE.rglob("*.py")}

    def known(name: str) -> str:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    edges = defaultdict(set)
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("myllm_mc.") or target == "myllm_mc":
                    found = known(target)
                    if found and found != module:
                        edges[module].add(found)
    return edges


def _folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _cycles(edges: dict) -> list:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def test_no_file_imports_another_that_imports_it_back():
    assert _cycles(_imports()) == []


def test_every_folder_imports_only_lower_floors():
    floor = {name: level for level, names in enumerate(FLOORS) for name in names}
    folders = {_folder(m) for m in _imports()} | {_folder(m) for targets in _imports().values() for m in targets}
    assert folders - {"myllm_mc"} <= set(floor), f"place these on a floor: {sorted(folders - set(floor))}"
    climbing = sorted(f"{module} imports {target}" for module, targets in _imports().items() for target in targets
                      if _folder(target) != "myllm_mc" and _folder(target) != _folder(module)
                      and floor[_folder(target)] >= floor[_folder(module)])
    assert climbing == []


def test_the_checker_sees_a_climbing_import_and_a_cycle():
    """The two checks above can fail: a cycle and a climbing pair are found when they exist."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    edges = _imports()
    assert "myllm_mc.data.tokenizer" in edges["myllm_mc.preflight"]          # resolved through `from x import y`
    assert "myllm_mc.train.callbacks" in edges["myllm_mc.train.task_eval"]   # relative imports resolved
