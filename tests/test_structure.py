"""The shape of the code, read from its imports and its source: which room of nasdeploy may import which (checked,
not remembered), no import cycle, nothing importing upward, the search without the training loop; one owner for
each rule (the small-input rule, model resolution, the input setting, feasibility, device resolution, configs built
by keyword); tests that mirror the package and import no private name; benchmarks that import no test."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "nasdeploy"
TESTS = ROOT / "tests"


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """nasdeploy module -> the nasdeploy modules it imports (anywhere in the file, function bodies included).

    ``from PKG import NAME`` depends on the submodule ``PKG.NAME`` where there is one, else on ``PKG`` itself. The
    version string read from the root package (``from . import __version__``) is not a dependency on what the root
    package re-exports."""
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
                if target == "nasdeploy" and all(a.name == "__version__" for a in node.names):
                    continue
                cands = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
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


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


# ------------------------------------------------------------------ the rooms and who may import whom

# A room is a package of nasdeploy, or a top-level module; a few small modules everything uses share one ("base"),
# and bench's timing and environment (which the latency tables use) are a room below the bench job (which runs
# export folders). "nasdeploy" is the package's front door (its __init__: create_model, Arch, ...).
SHARED = {"nasdeploy.errors": "base", "nasdeploy.io": "base", "nasdeploy.progress": "base", "nasdeploy.device": "base",
          "nasdeploy.bench.timing": "bench.timing", "nasdeploy.bench.env": "bench.timing",
          "nasdeploy.bench.stats": "bench.timing", "nasdeploy.bench.worker": "bench.timing",
          "nasdeploy.__main__": "cli", "nasdeploy": "nasdeploy"}

# Bottom to top: a room may import only rooms before it.
LAYERS = ("base", "data", "checkpoints", "nas", "evaluate", "pareto", "plots", "isa", "onnxgraph", "fold", "zoo",
          "gate", "quantize", "backends", "bench.timing", "latency", "search", "export", "deploy", "bench", "verify",
          "finetune", "pipeline", "cli", "nasdeploy")

# Who imports whom, as the code does it (a room that needs another not listed here: add it, if it is below).
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "data": {"base"},
    "checkpoints": {"base"},  # safe reading, official layouts, network checkpoints, the training state to resume
    "nas": {"base", "data", "checkpoints"},  # the supernet side: input settings, reading files; nothing above
    "evaluate": set(),
    "pareto": set(),
    "plots": {"base"},
    "isa": {"base"},
    "onnxgraph": {"base"},
    "fold": {"base", "nas"},
    "zoo": {"base", "data", "checkpoints", "nas", "fold"},
    "gate": {"base", "data", "evaluate"},
    "quantize": {"base", "data", "isa"},
    "backends": {"base", "onnxgraph", "quantize"},
    "bench.timing": {"base", "isa", "backends"},
    "latency": {"base", "nas", "fold", "quantize", "backends", "bench.timing"},
    # the search times its finalists end to end with the clock every whole-network figure is taken with
    "search": {"base", "data", "nas", "evaluate", "pareto", "plots", "zoo", "backends", "bench.timing", "latency"},
    "export": {"base", "data", "isa", "zoo", "gate", "quantize", "backends"},
    "deploy": set(),
    "bench": {"base", "zoo", "gate", "quantize", "backends", "bench.timing", "latency", "export", "deploy"},
    "verify": {"base", "data", "evaluate", "zoo", "gate", "quantize", "backends", "export"},
    "finetune": {"base", "data", "checkpoints", "nas", "zoo"},
    "pipeline": {"base", "data", "nas", "evaluate", "pareto", "plots", "gate", "quantize", "backends", "bench.timing",
                 "latency", "search", "export", "deploy", "bench", "finetune"},
    "cli": {"base", "data", "nas", "plots", "isa", "fold", "zoo", "gate", "quantize", "backends", "latency", "search",
            "export", "bench", "verify", "pipeline"},
    "nasdeploy": {"base", "nas", "zoo"},
}


def _room(module: str) -> str:
    if module in SHARED:
        return SHARED[module]
    return module.split(".")[1]


def _room_edges() -> dict[tuple[str, str], list[str]]:
    """(room, room it imports) -> the module imports behind it."""
    edges: dict[tuple[str, str], list[str]] = {}
    for m, deps in _imports().items():
        for d in deps:
            a, b = _room(m), _room(d)
            if a != b:
                edges.setdefault((a, b), []).append(f"{m} -> {d}")
    return edges


def test_every_module_is_in_a_room_of_the_table():
    rooms = {_room(m) for m in _imports()}
    assert rooms == set(ALLOWED) == set(LAYERS), (rooms ^ set(ALLOWED), set(ALLOWED) ^ set(LAYERS))


def test_the_table_only_points_down():
    up = [(a, b) for a, bs in ALLOWED.items() for b in bs if LAYERS.index(b) >= LAYERS.index(a)]
    assert not up, up


def test_rooms_import_only_what_the_table_allows():
    edges = _room_edges()
    bad = {k: v for k, v in edges.items() if k[1] not in ALLOWED[k[0]]}
    assert not bad, "\n".join(f"{a} may not import {b}: {', '.join(sorted(v))}" for (a, b), v in sorted(bad.items()))


def test_the_table_says_what_the_code_does():
    """No allowance is stale: each is used by an import, so the table is the code's layering, not a wish."""
    edges = _room_edges()
    stale = [(a, b) for a, bs in ALLOWED.items() for b in bs if (a, b) not in edges]
    assert not stale, stale


def test_the_search_reads_supernets_without_the_training_loop():
    graph = _imports()
    search = [n for n in graph if n.startswith("nasdeploy.search")]
    reached, todo = set(), list(search)
    while todo:  # everything the search imports, directly or through other modules
        for d in graph[todo.pop()] - reached:
            reached.add(d)
            todo.append(d)
    assert "nasdeploy.nas.train" not in reached
    assert any("nasdeploy.nas.supernet_checkpoint" in graph[n] for n in search)  # supernets are read through nas/supernet_checkpoint


def test_nothing_imports_the_command_line_and_nothing_below_imports_the_pipeline():
    for name, deps in _imports().items():
        if _room(name) != "cli":
            assert not any(_room(d) == "cli" for d in deps), name
        if _room(name) not in ("pipeline", "cli", "nasdeploy"):
            assert not any(_room(d) == "pipeline" for d in deps), name


def _string_key_lookups(path: Path) -> list[str]:
    """``x["key"]`` and ``x.get("key")`` in a module, each as its source text."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(
                node.slice.value, str):
            out.append(ast.unparse(node))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            out.append(ast.unparse(node))
    return out


def test_the_pipeline_wires_typed_stages():
    """pipeline/run.py is the wiring: an ordered stage table of functions, no getattr lookup of stages and no
    string-key lookup at all; the stages read the results before them by attribute (a lower layer's own record,
    such as the bench environment, may still be a table)."""
    from nasdeploy.pipeline.results import STAGES
    from nasdeploy.pipeline.run import STAGE_TABLE

    run = PKG / "pipeline" / "run.py"
    assert tuple(STAGE_TABLE) == STAGES and all(callable(f) for f in STAGE_TABLE.values())
    assert _string_key_lookups(run) == []
    assert "getattr" not in run.read_text()
    for name in ("model_stages.py", "ship_stages.py", "context.py"):
        into_results = [x for x in _string_key_lookups(PKG / "pipeline" / name) if "results" in x]
        assert not into_results, (name, into_results)


def test_lower_layers_never_import_the_export_command():
    graph = _imports()
    for name, deps in graph.items():
        lower = name.startswith("nasdeploy.backends") or name in ("nasdeploy.quantize", "nasdeploy.gate")
        if lower:
            assert not any(d.startswith("nasdeploy.export") for d in deps), (name, sorted(deps))


def test_every_package_says_what_it_holds():
    for init in [PKG / "__init__.py", *PKG.glob("*/__init__.py"), ROOT / "benchmarks" / "__init__.py"]:
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, init


# ------------------------------------------------------------------ one owner for each rule

def _source_lines(pattern: str, root: Path = PKG) -> list[str]:
    rx = re.compile(pattern)
    return [f"{p.relative_to(root).as_posix()}:{i}" for p in root.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if rx.search(line) and not line.lstrip().startswith("#")]


def _files(lines: list[str]) -> set[str]:
    return {s.split(":")[0] for s in lines}


def test_the_small_input_rule_is_written_once():
    # the stride plan for small images is chosen in data.InputSetting.for_images alone
    assert _files(_source_lines(r"SMALL_INPUT_STRIDES")) == {"data.py"}
    assert _files(_source_lines(r"<\s*SMALL_INPUT_LIMIT|<\s*64\b")) == {"data.py"}
    assert not _source_lines(r"== ?\"fashion-mnist\"|!= ?\"fashion-mnist\"")


def test_models_are_resolved_in_one_place():
    # zoo.resolve is the opening every command takes; nothing else loads a model and folds it for itself
    assert _files(_source_lines(r"\bload_any\(|\bcreate_model\(")) <= {"zoo.py", "__init__.py"}
    assert _files(_source_lines(r"\bfold\(\w+(\.net)?, input_size=")) <= {"zoo.py"}


def test_the_input_setting_is_given_where_a_network_is_made():
    # Network and Supernet declare it in their constructors; nothing patches it onto a network afterwards
    made = [f"{f}:{_line(f, 'self.input_setting = input_setting')}" for f in ("nas/net.py", "nas/supernet.py")]
    assert sorted(_source_lines(r"\binput_setting = ")) == made
    assert not _source_lines(r"setattr\([^)]*input_setting")


def _line(rel: str, text: str) -> str:
    return str(next(i for i, line in enumerate((PKG / rel).read_text().splitlines(), 1) if text in line))


def test_feasibility_is_decided_by_the_problem_alone():
    # a cost or a latency compared with a target: a predicted cost only in search/problem.py (Problem.within), a
    # measured latency with its bounds only in bench/stats.py (RoundLatency.verdict: meets, misses, undecided)
    target = r"[\w.\]\[\"']*\btarget(?:_ms)?\b"
    compared = _source_lines(rf"(<=|>=|<(?!=)|>(?!=))\s*{target}|{target}\s*(<=|>=|<(?![=<])|>(?![=>]))")
    assert _files(compared) == {"search/problem.py", "bench/stats.py"}, compared
    assert sum(line.startswith("bench/stats.py") for line in compared) == 2, compared
    assert len(_source_lines(r"cost\s*<=\s*target")) == 1


def test_one_device_resolver():
    # "auto" becomes a device in nasdeploy/device.py alone; everything else calls resolve_device
    assert _files(_source_lines(r"\"cuda\" if torch\.cuda\.is_available\(\) else \"cpu\"")) == {"device.py"}
    assert _files(_source_lines(r"def (resolve|check)_device\b")) == {"device.py"}


def test_search_configs_are_built_by_keyword():
    calls = []
    for root in (PKG, TESTS, ROOT / "benchmarks"):
        for p in root.rglob("*.py"):
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                        "SearchConfig", "SearchInputs") and node.args:
                    calls.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert not calls, calls


# ------------------------------------------------------------------ tests and benchmarks

def test_tests_mirror_the_package():
    """A reader who opens nasdeploy/X.py (or the package nasdeploy/X/, or a module of nasdeploy/nas/) finds
    tests/test_X.py."""
    names = {p.stem for p in PKG.glob("*.py") if not p.stem.startswith("__")}
    names |= {p.parent.name for p in PKG.glob("*/__init__.py")} - {"nas"}
    names |= {p.stem for p in (PKG / "nas").glob("*.py") if not p.stem.startswith("__")}
    missing = sorted(n for n in names if not (TESTS / f"test_{n}.py").exists())
    assert not missing, missing


def test_no_test_imports_a_private_name():
    private = []
    for p in TESTS.glob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nasdeploy"):
                private += [f"{p.name}:{node.lineno} {a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    assert not private, private


def test_benchmarks_run_as_modules_and_import_no_test():
    for p in (ROOT / "benchmarks").glob("*.py"):
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith(("tests", "helpers", "conftest")), p.name
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                    "insert", "append") and ast.unparse(node.func.value) == "sys.path":
                raise AssertionError(f"{p.name}:{node.lineno} edits sys.path: run it as python -m benchmarks.NAME")


def test_the_tests_named_in_the_docs_exist():
    """tests/README.md maps every command and option to tests by tests/FILE.py::NAME: each must exist."""
    missing = []
    for doc in (TESTS / "README.md", ROOT / "README.md", ROOT / "benchmarks" / "README.md",
                TESTS / "deliberate_breaks.py", ROOT / "pyproject.toml"):
        for m in re.finditer(r"tests/(test_[a-z0-9_]+)\.py(?:::(\w+))?", doc.read_text()):
            f = TESTS / f"{m[1]}.py"
            if not f.exists() or m[2] and not re.search(rf"^def {m[2]}\(", f.read_text(), re.M):
                missing.append(f"{doc.name}: {m[0]}")
    assert not missing, missing


def test_every_deliberate_break_can_still_be_planted():
    """tests/deliberate_breaks.py plants each bug by replacing a line of code: that line must still be there, or
    the break plants nothing and proves nothing."""
    from .deliberate_breaks import BREAKS

    stale = [b.name for b in BREAKS if b.file and b.old not in (ROOT / b.file).read_text()]
    assert not stale, stale


def test_the_readmes_layout_table_matches_the_tree():
    """Every path the README's Layout table names exists, and every module and package of nasdeploy is named."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Layout"):].split("\n\n")[1]
    named = set()
    for row in table.splitlines()[2:]:
        cells = re.findall(r"`([^`]+)`", row.split("|")[1])
        base = cells[0].rsplit("/", 1)[0] + "/" if "/" in cells[0].rstrip("/") else ""
        for c in cells:
            named.add(c if "/" in c.rstrip("/") or c.endswith("/") and not base else base + c)
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, missing
    tree = {f"nasdeploy/{p.name}" for p in PKG.glob("*.py") if not p.name.startswith("__")}
    tree |= {f"nasdeploy/{p.parent.name}/" for p in PKG.glob("*/__init__.py")}
    assert tree <= named, sorted(tree - named)
