import json
import statistics
import subprocess
import sys

import pytest

from nasdeploy.errors import UsageError
from nasdeploy.pipeline import PipelineConfig, run_pipeline

from .conftest import ROOT, run_cli
from .helpers import kill_when

TINY = """
out = "{out}"
space = "scarlet"
data = "fashion-mnist"
device = "cpu"
accuracy_images = 200

[supernet]
steps = {steps}
batch_size = 8
ckpt_every = 1

[latency]
repeats = 3
warmup = 1
validate_archs = 3
tables = {tables}

[search]
population = 4
evaluations = 4
calib_batches = 1
eval_images = 100
finalists = 1  # one finalist: the choice does not depend on timing, so killed and whole runs choose alike
latency_confidence = 0.75  # bounds from 2 rounds (the slowest of two): the bench's 2 rounds decide
time_repeats = 5  # the finalists' clock, as the bench's
time_rounds = 2
race_images = 200
race_calib_images = 64

[finetune]
steps = 5
batch_size = 16

[export]
parity_images = 32

[bench]
batches = [1]
repeats = 5
rounds = 2

[deploy]
engines = ["onnxruntime:fp32", "onnxruntime:int8"]
"""


def tiny(tmp_path, tables, name="run", steps=2, extra=""):
    """A tiny pipeline config; its latency tables are the session's (``tiny_tables``: measuring them is the latency
    stage's slow part, tested in tests/test_latency.py), so only what differs between runs is run."""
    p = tmp_path / f"{name}.toml"
    p.write_text(TINY.format(out=tmp_path / name, steps=steps, tables=json.dumps([str(t) for t in tables])) + extra)
    return p


def _config(d, name: str, tables):
    """The tiny config with a longer supernet and a fine-tune that checkpoints every step (so that a kill lands
    inside each), and no speed check nor second round of finalists: their timing would move the tables, the target
    and so the choice between the killed run and the whole one (tests/test_speed.py and tests/test_search.py check
    them)."""
    p = tiny(d, tables, name, steps=4)
    p.write_text(p.read_text().replace("[finetune]\nsteps = 5", "[finetune]\nsteps = 8\nckpt_every = 1")
                 .replace("[search]\n", "[search]\nspeed_archs = 0\nsecond_round = false\n"))
    return p


def _cmd(cfg) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "pipeline", "--config", str(cfg), "--no-progress"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_tables):
    """One uninterrupted tiny pipeline (a process of its own, as the killed runs below)."""
    d = tmp_path_factory.mktemp("pipeline")
    cfg = _config(d, "ref", tiny_tables)
    r = subprocess.run(_cmd(cfg), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return d / "ref", cfg


def test_tiny_pipeline_end_to_end(reference):
    out, cfg = reference
    results = json.loads((out / "report.json").read_text())["stages"]
    assert all(results[s]["status"] == "ran"
               for s in ("supernet", "latency", "search", "finetune", "export", "accuracy", "bench", "deploy"))
    text = (out / "report.md").read_text()
    for section in ("## Stages", "## What backs the search", "Pareto fronts, one per candidate engine",
                    "Parity of the exported artefacts", "## Deployment candidates", "## Speed", "## Artefacts"):
        assert section in text
    for f in ("report.json", "search/pareto.png", "search/best.toml", "export/model.onnx", "export/manifest.json",
              "bench.png", "lut_onnxruntime_int8.json", "deployed/manifest.json"):
        assert (out / f).exists(), f
    par = results["export"]["parity"][0]
    assert par["backend"] == "onnxruntime" and par["top1_agreement"] == 100.0
    best, choice = results["search"]["best"], results["search"]["choice"]
    # the choice was made on end-to-end timings: where it is confirmed, the fresh rounds' upper bound holds the
    # target, and the figure reported takes every round (qualifying and fresh); where nothing held it at the
    # confidence asked, the search says so
    target, chosen = results["search"]["target_ms"], results["search"]["chosen"]
    if choice["confirmed"]:
        assert chosen["retimed"] and chosen["verdict"] == "meets" and chosen["fresh"]["upper"] <= target
        mine = next(f for f in results["search"]["finalists"] if f["arch"] == chosen["arch"])
        rounds = mine["timing"][chosen["engine"]]["round_medians"] + chosen["fresh"]["round_medians"]
        assert chosen["latency"]["round_medians"] == rounds
        assert abs(chosen["latency"]["median"] - statistics.median(rounds)) < 1e-6
        assert abs(best["latency_ms"] - chosen["latency"]["median"]) < 1e-6
    else:
        assert "no finalist met the target" in choice["rule"]
    promise = results["deploy"]["latency"]
    lat = promise["bench_latency"]
    expected = "meets" if lat["upper"] is not None and lat["upper"] <= target else \
        "misses" if lat["lower"] is not None and lat["lower"] > target else "undecided"
    assert promise["verdict"] == expected and promise["meets_target"] == (expected == "meets")
    assert abs(promise["bench_median_ms"] - lat["median"]) < 1e-6 and promise["statistic"] == "median of round medians"
    _side_by_side_pairs_the_shipped_file_with_the_searchs_network(results, text)
    _per_layer_is_the_tables_own(results, text)
    _deployed_is_the_fastest_engine_that_passed(results)
    _shipped_is_what_was_timed_and_gated(results, out)
    _report_says_what_the_json_holds(text, json.loads((out / "report.json").read_text()))
    # a rerun skips everything
    again, _ = run_pipeline(PipelineConfig.read(cfg), progress=False)
    assert list(again.status) == list(results) and set(again.status.values()) == {"cached"}
    assert again.as_dict() == {s: r | {"status": "cached"} for s, r in results.items()}  # loaded back as written


def _side_by_side_pairs_the_shipped_file_with_the_searchs_network(results: dict, text: str) -> None:
    """After the bench, the shipped file and the search's network of the chosen architecture were timed together
    (the engine had a latency table); the ratio is round by round, the machine's drift against the search's figure."""
    promise, tables = results["deploy"]["latency"], results["latency"]["tables"]
    sb = promise["side_by_side"]
    if promise["engine"].split("@")[0] not in tables:  # ENGINE@T: against the search's ENGINE
        assert sb is None
        return
    assert sb["engine"] == promise["engine"] and sb["batch"] == promise["batch"]
    a, b = sb["shipped"]["round_medians"], sb["searched"]["round_medians"]
    assert len(a) == len(b) == sb["shipped_vs_searched"]["rounds"] >= 1
    ratios = [x / y for x, y in zip(a, b)]
    assert abs(sb["shipped_vs_searched"]["median"] - statistics.median(ratios)) < 1e-4
    if promise["search_engine"] == promise["engine"]:  # the search timed exactly the shipped engine
        assert abs(sb["machine_vs_search"] - sb["searched"]["median"] / promise["search_measured_ms"]) < 1e-4
    else:  # another thread count shipped: the search's figure is of the engine it chose under
        assert sb["machine_vs_search"] is None and promise["search_engine"] == results["search"]["chosen"]["engine"]
    assert "Side by side after the bench" in text and f"{sb['shipped_vs_searched']['median']:.2f}x" in text


def _per_layer_is_the_tables_own(results: dict, text: str) -> None:
    """With tables of two precisions, the report's per-layer figures are the tables' own entries for the chosen
    architecture; the serving layout is named beside the latency choice."""
    from nasdeploy.latency import LatencyTable

    dp = results["deploy"]
    assert "Serving at batch 1 on all" in text
    arch = results["search"]["chosen"]["arch"]
    for engine, t in results["latency"]["tables"].items():
        mine = [c["ms"][engine] for c in dp["per_layer"]]
        assert mine == pytest.approx([ms for _, ms in LatencyTable.load(t["lut"]).breakdown(arch)], abs=1e-6)
    title = "Why no reduced precision ships here" if dp["engine"].split("@")[0].endswith(":fp32") else \
        "Where the reduced precisions gain and lose"
    assert f"### {title}" in text and "onnxruntime:int8 / onnxruntime:fp32" in text


def _step(path) -> int:
    from nasdeploy.checkpoints.files import read_file

    try:
        return int(read_file(path)["step"]) if path.exists() else -1
    except Exception:  # noqa: BLE001 - being replaced right now: not yet readable
        return -1


def test_killed_pipeline_resumes_to_the_uninterrupted_result(reference, tmp_path, tiny_tables):
    """Killed inside supernet training, then inside fine-tuning: the reruns skip what was done, resume the rest, and
    end with the uninterrupted run's supernet and fine-tuned model, bit for bit."""
    import torch

    from nasdeploy.checkpoints.files import read_file

    ref, _ = reference
    cfg = _config(tmp_path, "cut", tiny_tables)
    cfg.write_text(cfg.read_text().replace("[bench]\n", "[bench]\nthreads = []\n"))  # no extra rows: what is resumed
    out = tmp_path / "cut"
    proc = subprocess.Popen(_cmd(cfg), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, lambda: _step(out / "supernet" / "checkpoint.pt") >= 2, "supernet step 2")
    assert not (out / "stage_supernet.json").exists()
    proc = subprocess.Popen(_cmd(cfg), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, lambda: _step(out / "finetune" / "finetune_state.pt") >= 3, "fine-tune step 3")
    assert (out / "stage_search.json").exists() and not (out / "stage_finetune.json").exists()
    before = {s: (out / f"stage_{s}.json").read_text() for s in ("latency", "search")}
    r = subprocess.run(_cmd(cfg), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[supernet] done before: skipped" in r.stdout and "[search] done before: skipped" in r.stdout
    for s, text in before.items():
        assert (out / f"stage_{s}.json").read_text() == text
    for f in ("supernet/supernet.pt", "finetune/model.pt"):
        a, b = read_file(ref / f), read_file(out / f)
        sa = a.get("state_dict", a.get("model"))
        sb = b.get("state_dict", b.get("model"))
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), f
    assert json.loads((out / "stage_bench.json").read_text())["rows"]


def test_another_config_on_a_run_folder_is_refused_before_anything_is_written(reference, tmp_path, tiny_tables):
    """A run folder records its settings: another configuration on it is refused in one line before anything is
    written (its stages would be reused for settings they were not made with); the folder still resumes with its
    own, and --stop-after is honoured where the stage was done before."""
    ref, cfg = reference
    other = _config(tmp_path, "other", tiny_tables)
    other.write_text(other.read_text().replace("[supernet]\nsteps = 4", "[supernet]\nsteps = 3"))

    def snapshot() -> dict:
        return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in ref.rglob("*") if p.is_file()}

    before = snapshot()
    r = run_cli("pipeline", "--config", other, "--out", ref, "--no-progress")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"nasdeploy pipeline: error: {ref} holds a pipeline run made with other settings "
                               "(supernet.steps: 4 here before, 3 now): choose another --out"), r.stderr
    assert snapshot() == before
    r = run_cli("pipeline", "--config", cfg, "--stop-after", "latency", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "[supernet] done before: skipped" in r.stdout and "[latency] done before: skipped" in r.stdout
    assert "[search]" not in r.stdout and "stopped after latency" in r.stdout
    r = run_cli("pipeline", "--config", cfg, "--no-progress")
    assert r.returncode == 0 and r.stdout.count("done before: skipped") == 8, r.stdout


@pytest.mark.parametrize("text, fragment", [
    ("[supernet]\nstepz = 3\n", "unknown setting.*stepz"),
    ('[supernet]\nsteps = "many"\n', "config.supernet.steps must be int, got 'many'"),
    ("accuracy_images = 1.5\n", "config.accuracy_images must be int"),
    ('[deploy]\nengines = ["nosuch:int8"]\n', "unknown backend 'nosuch'"),
    ('[deploy]\nengines = ["onnxruntime:int4"]\n', "unknown precision 'int4'"),
    ('[search]\nlatency_target = "2"\n', "needs a unit"),
    ('[search]\nlatency_headroom = "lots"\n', "latency_headroom must be auto or a share"),
    ("[search]\nlatency_headroom = 1.5\n", "latency_headroom must be auto or a share"),
    ("[search]\nspeed_archs = -1\n", "search.speed_archs .*must be 0 or more"),
    ('data = "/nowhere/at/all"\n', "does not exist"),
    ("[bench]\nbatches = [1, \"x\"]\n", "must be int"),
    ("seed = true\n", "config.seed must be int"),
])
def test_bad_config_is_refused_before_the_first_stage(tmp_path, text, fragment):
    """Types, engines, data and target are checked before anything runs: nothing is written."""
    p = tmp_path / "bad.toml"
    p.write_text(f'out = "{tmp_path / "out"}"\n' + text)
    with pytest.raises(UsageError, match=fragment) if "data" not in text else pytest.raises(Exception, match=fragment):
        run_pipeline(PipelineConfig.read(p), progress=False)
    assert not (tmp_path / "out").exists()


def _shipped_is_what_was_timed_and_gated(results: dict, out) -> None:
    """The deployed files are byte for byte the ones bench timed and the accuracy stage scored (their hashes, read
    here from the bench JSON and the accuracy stage, and computed from the files in deployed/)."""
    from nasdeploy.export.manifest import sha256

    dp = results["deploy"]
    row = next(r for r in json.loads((out / "bench.json").read_text())["rows"]
               if _engine(r) == dp["engine"] and r["batch"] == dp["batch"])
    timed, listed = row["files"], f"{row['backend']}:{row['dtype']}"  # ENGINE@T runs ENGINE's files
    gated = results["accuracy"]["engines"][listed]["files"]
    shipped = {name: sha256(out / "deployed" / name) for name in timed}
    assert timed and timed == gated == shipped == dp["shipped_files"], (timed, gated, shipped)
    assert dp["same_files"] is True
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert manifest["engines"][listed]["files"] == timed
    # the deployed manifest names the engine that ships with the threads it was timed with, and its folder runs it
    # with them
    from nasdeploy.export.manifest import ExportFolder

    deployed = ExportFolder.open(out / "deployed")
    assert list(deployed.engines) == [dp["shipped_engine"]]
    assert deployed.entry(dp["shipped_engine"])["threads"] == row["threads"] >= 1  # an ONNX Runtime engine
    assert dp["shipped_engine"] == f"{listed}@{row['threads']}"
    assert deployed.runner(dp["shipped_engine"]).threads == row["threads"]
    assert deployed.latency_target["engine"] == dp["shipped_engine"]
    # the latency tables the search used are the candidates', and the report names the one shipped
    assert set(dp["latency_tables"]) == set(results["export"]["engines"])
    assert results["search"]["best"]["engine"] in dp["latency_tables"]


def _deployed_is_the_fastest_engine_that_passed(results: dict) -> None:
    """The deploy stage against the accuracy and bench stages it reads (an independent recomputation)."""
    dp, acc, rows = results["deploy"], results["accuracy"], results["bench"]["rows"]
    engines = results["export"]["engines"]
    assert "onnxruntime:int8" in engines and set(acc["engines"]) == set(engines)
    from nasdeploy.evaluate import wilson

    ref, n = acc["torch_folded"]["top1"], acc["images"]
    informative = wilson(round(ref * n / 100), n)[0] > 10.0  # above chance on 10 classes: the labels decide
    at = [r for r in rows if r["batch"] == dp["batch"]]
    speed = {_engine(r): r["throughput"] for r in at}
    for e, a in acc["engines"].items():
        drop = ref - a["top1"] if informative else 100.0 - a["gate"]["agreement"]
        assert a["gate"]["basis"] == ("labels" if informative else "agreement"), e
        assert abs(a["gate"]["drop"] - drop) < 1e-9, e
        assert a["gate"]["passed"] == (drop <= dp["budget"]), e
    # every exported engine's row competes, and so does each at the other thread counts the bench timed (the same
    # files: the same gate)
    from nasdeploy.backends.base import runtime_threads

    assert any(r["engine_threads"] == 1 for r in at if r["files"]) == (runtime_threads() > 1)
    passing = [(r["throughput"], _engine(r)) for r in at if r["files"]
               and acc["engines"][f"{r['backend']}:{r['dtype']}"]["gate"]["passed"]]
    assert sorted(c["engine"] for c in dp["candidates"] if c["throughput"] is not None) == \
        sorted(_engine(r) for r in at if r["files"])
    verdict = {_engine(r): (r.get("target") or {}).get("verdict") for r in at}
    holding = [(t, e) for t, e in passing if verdict.get(e) == "meets"]
    assert sorted(dp["holding_target"]) == sorted(e for _, e in holding)
    pool = holding or passing  # the target first: only engines that hold it compete, where some do
    fastest = max(pool)[1]
    assert dp["fastest"] == fastest
    rounds = {_engine(r): r["latency"]["round_medians"] for r in at}
    ref_rounds = rounds["onnxruntime:fp32"]
    assert 2 <= len(ref_rounds) <= 6  # the config's bench rounds, up to the cap for a row not decided
    ref_in = any(e == "onnxruntime:fp32" for _, e in pool)
    # shipped: the fastest engine of the pool that beat the reference in each round (round k against round k)
    shipped = next((e for _, e in sorted(pool, reverse=True)
                    if (e == "onnxruntime:fp32" and ref_in) or all(a < b for a, b in zip(rounds[e], ref_rounds))),
                   max(pool)[1])
    assert dp["engine"] == shipped
    ort = speed["onnxruntime:fp32"]
    assert abs(dp["vs_reference"] - speed[dp["engine"]] / ort) < 1e-9


def _engine(row: dict) -> str:
    """A bench row's engine, as bench.json records it: BACKEND:PRECISION[@THREADS]."""
    return f"{row['backend']}:{row['dtype']}" + (f"@{row['engine_threads']}" if row.get("engine_threads") else "")


def _table(text: str, header_start: str) -> list[list[str]]:
    """The rows of the Markdown table whose header starts with ``header_start``, cells stripped."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _report_says_what_the_json_holds(text: str, rep: dict) -> None:
    """Every figure of the report's tables read back from the Markdown equals report.json's, rounded as shown."""
    res = rep["stages"]
    se, be, ex = res["search"], res["bench"], res["export"]
    front = _table(text, "| architecture | engine | predicted latency (ms) | supernet top-1")
    assert [r[0].strip("`") for r in front] == [c["arch"] for c in se["front"]]
    for row, c in zip(front, se["front"]):
        assert row[1] == c["engine"] and row[2] == f"{c['latency_ms']:,.3f}"
        acc, ci = row[3].split(" [")
        assert acc == f"{c['accuracy']:,.2f}" and ci == f"{c['ci95'][0]:.1f}, {c['ci95'][1]:.1f}]"
    speed = _table(text, "| backend | dtype | batch | images/s")
    assert len(speed) == len(be["rows"])
    for row, r in zip(speed, be["rows"]):
        assert row[:3] == [r["backend"], r["dtype"], str(r["batch"])] and row[6] == f"{r['speedup']:.2f}x"
        assert row[7] == str(r["threads"]) and row[8] == f"{r['throughput'] / r['threads']:,.1f}"  # a CPU row
    parity = _table(text, "| backend | dtype | max abs | max rel")
    assert [(r[0], r[5]) for r in parity] == [(p["backend"], f"{p['top1_agreement']:.2f}%") for p in ex["parity"]]
    cands = _table(text, "| engine | median ms | upper bound ms")
    assert cands, "no deployment candidates in the report"
    dp = res["deploy"]
    assert [r[0] for r in cands] == [c["engine"] for c in dp["candidates"]]
    for row, c in zip(cands, dp["candidates"]):
        assert row[2] == (f"{c['upper_ms']:,.3f}" if c["upper_ms"] is not None else "-")
        assert row[3] == (c["verdict"] or "-")
        assert row[5].startswith(f"{c['top1']:.2f} [") and row[7] == ("pass" if c["gate"]["passed"] else "fail")
        lo, hi = c["gate"]["drop_ci95"]
        assert row[6] == f"{c['gate']['drop']:.2f} [{lo:.2f}, {hi:.2f}]"
        assert (row[8] == "**yes**") == (c["engine"] == dp["engine"])
    fin = _table(text, "| | architecture | engine | predicted (ms) | measured (ms)")
    assert sorted(r[1].strip("`") for r in fin) == sorted(f["arch"] for f in se["finalists"])
    for row in fin:
        f = next(f for f in se["finalists"] if f["arch"] == row[1].strip("`"))
        assert row[2] == f["engine"] and row[7] == (f["verdict"] or "-")
        assert row[4] == f"{f['measured_ms'][f['engine']]:,.3f}"
        assert (row[0] == "**chosen**") == (f["arch"] == se["best"]["arch"])
    zoo = _table(text, "| model | architecture | engine | predicted latency")
    for row in zoo[1:]:  # each reference's verdict is what its paired interval allows
        mean, lo, hi = se["references"][row[0].replace(" (architecture)", "")]["paired_vs_best"]
        expected = ("higher" if lo > 0 else "lower" if hi < 0 else "not distinguishable")
        assert row[5] == f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]: {expected}", row


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_configuration_reads(path):
    """configs/: each reads with every key known and every value of its type, and its engines are known names."""
    from nasdeploy.backends import parse_engines

    cfg = PipelineConfig.read(path)
    assert cfg.deploy.engines == "auto" or parse_engines(cfg.deploy.engines)
    assert cfg.search.search_config(1.0, "cpu", cfg.seed).check().evaluations == cfg.search.evaluations


def test_the_search_section_is_the_searchs_own_configuration(tmp_path):
    """[search] takes every setting of SearchConfig by name; the target is latency_target (with units) and the
    device and seed are the pipeline's, refused in the section."""
    from nasdeploy.search import SearchConfig

    p = tmp_path / "c.toml"
    p.write_text('[search]\nlatency_target = "1.5ms"\ntime_rounds = 7\nobjectives = ["accuracy", "params"]\n'
                 'criterion = "loss"\n')
    s = PipelineConfig.read(p).search
    assert s.target == 1.5 and s.time_rounds == 7 and s.objectives == ("accuracy", "params")
    sc = s.search_config(1.2, "cpu", seed=3)
    assert type(sc) is SearchConfig and (sc.target_ms, sc.seed, sc.time_rounds, sc.criterion) == (1.2, 3, 7, "loss")
    assert PipelineConfig.demo().search.evaluations == 30 and SearchConfig(target_ms=1.0).evaluations == 64
    for bad, says in (("target_ms = 1.0", "search.target_ms is the pipeline's"),
                      ('device = "cuda"', "search.device and search.seed are the pipeline's"),
                      ("seed = 5", "search.device and search.seed are the pipeline's")):
        p.write_text(f"[search]\n{bad}\n")
        with pytest.raises(UsageError, match=says):
            PipelineConfig.read(p)


def test_a_stage_marker_loads_back_as_its_typed_result_or_the_stage_is_redone(tmp_path):
    """stage_<name>.json: the result's fields, seconds first; read back into the stage's dataclass on a rerun, and a
    marker that does not load as one (unreadable, a field missing or unknown, a value of the wrong type) is None, so
    the stage runs again."""
    from nasdeploy.io import write_json
    from nasdeploy.pipeline.results import RESULT_TYPES, STAGES, FinetuneResult

    assert tuple(RESULT_TYPES) == STAGES
    r = FinetuneResult(card="finetune/model.toml", steps=5, batch_size=16, lr=0.02, seconds=1.5)
    m = write_json(tmp_path / "stage_finetune.json", r.as_dict())
    assert list(json.loads(m.read_text())) == ["seconds", "card", "steps", "batch_size", "lr"]
    assert FinetuneResult.load(m) == r
    good = r.as_dict()
    for bad in ({k: v for k, v in good.items() if k != "lr"}, good | {"steps": "five"}, good | {"extra": 1}):
        write_json(m, bad)
        assert FinetuneResult.load(m) is None, bad
    m.write_text('{"seconds": 1.0, "card": ')
    assert FinetuneResult.load(m) is None


@pytest.mark.parametrize("searched, bench, says", [
    ([0.81, 0.76, 0.84, 0.79, 0.92, 0.80, 0.77], [0.69, 0.68, 0.70, 0.68, 0.69], "misses"),  # the demo of 2026-12-07
    ([0.70, 0.71, 0.69, 0.70, 0.72], [0.90, 0.91, 0.88, 0.92, 0.90], "meets"),
    ([0.70, 0.71, 0.69, 0.70, 0.72], [0.71, 0.69, 0.70, 0.72, 0.70], None),  # overlapping bounds: they agree
])
def test_the_promise_says_when_search_and_bench_disagree_beyond_their_bounds(searched, bench, says):
    """Rounds of one engine taken minutes apart whose bounds do not overlap: the machine changed speed between the
    timings, and the report says so instead of letting the bench's verdict stand alone."""
    from nasdeploy.bench.stats import RoundLatency
    from nasdeploy.pipeline.ship_stages import disagreement

    note = disagreement(RoundLatency.of(searched).as_dict(), RoundLatency.of(bench), 0.75)
    if says is None:
        assert note is None
    else:
        assert f"({says})" in note and "time the deployed folder again" in note
    assert disagreement(None, RoundLatency.of(bench), 0.75) is None
    assert disagreement(RoundLatency.of(searched[:3]).as_dict(), RoundLatency.of(bench), 0.75) is None  # no bounds
