"""The shape of the code, read from its imports: no import cycle inside nasdeploy, and the deploy stack layered
(backends, quantize and gate never import the export command); the small-input rule and the model-resolution
opening written once."""
from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "nasdeploy"


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """nasdeploy module -> the nasdeploy modules it imports (anywhere in the file, function bodies included)."""
    graph: dict[str, set[str]] = {}
    modules = {_module(p) for p in PKG.rglob("*.py")}
    for path in PKG.rglob("*.py"):
        name = _module(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                cands = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            else:
                continue
            for c in cands:
                while c and c not in modules:
                    c = c.rsplit(".", 1)[0] if "." in c else ""
                if c and c != name:
                    deps.add(c)
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if m.startswith(n + ".") or n.startswith(m + ".") and m == n.rsplit(".", 1)[0]:
                continue  # a package and its own submodules
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_cycle_in_nasdeploy():
    cyc = _cycle(_imports())
    assert cyc is None, " -> ".join(cyc)


def test_lower_layers_never_import_the_export_command():
    graph = _imports()
    for name, deps in graph.items():
        lower = name.startswith("nasdeploy.backends") or name in ("nasdeploy.quantize", "nasdeploy.gate")
        if lower:
            assert not any(d.startswith("nasdeploy.export") for d in deps), (name, sorted(deps))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _source_lines(pattern: str) -> list[str]:
    rx = re.compile(pattern)
    return [f"{p.relative_to(PKG)}:{i}" for p in PKG.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if rx.search(line) and not line.lstrip().startswith("#")]


def test_the_small_input_rule_is_written_once():
    # the stride plan for small images is chosen in data.InputSetting.for_images alone
    assert {s.split(":")[0] for s in _source_lines(r"SMALL_INPUT_STRIDES")} == {"data.py"}
    assert {s.split(":")[0] for s in _source_lines(r"<\s*SMALL_INPUT_LIMIT|<\s*64\b")} == {"data.py"}
    assert not _source_lines(r"== ?\"fashion-mnist\"|!= ?\"fashion-mnist\"")


def test_models_are_resolved_in_one_place():
    # zoo.resolve is the opening every command takes; nothing else loads a model and folds it for itself
    assert {s.split(":")[0] for s in _source_lines(r"\bload_any\(|\bcreate_model\(")} <= {"zoo.py", "__init__.py"}
    assert {s.split(":")[0] for s in _source_lines(r"\bfold\(\w+(\.net)?, input_size=")} <= {"zoo.py"}
