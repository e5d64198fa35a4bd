"""The pipeline's final report: Markdown and JSON, with the Pareto and bench plots beside it, read from the stages'
typed results."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..backends import Engine
from ..bench.run import serving_layouts
from ..bench.side_by_side import AGREE
from ..io import write_json, write_text
from ..pareto import FrontPoint
from ..search.finalists import second_round_text
from .results import AccuracyResult, DeployResult, PipelineResults, Promise, SearchStageResult

RANKING_STUDY = Path(__file__).resolve().parents[1] / "assets" / "ranking_study.json"
# report.json's layout: 2 since the search stage holds the search's own result whole (every trial as
# "candidates", "resolved" for the resolved front, the trial count derived) and the deploy candidates, bench rows
# and promise are typed records (the same keys as before)
REPORT_VERSION = 2


def _f(v, nd=3) -> str:
    return "-" if v is None else (f"{v:,.{nd}f}" if isinstance(v, float) else str(v))


def _ci(ci) -> str:
    return f"[{ci[0]:.1f}, {ci[1]:.1f}]" if ci else ""


def write_report(out: Path, cfg, results: PipelineResults, prov: dict) -> Path:
    """``report.md`` and ``report.json`` of a pipeline whose every stage is done."""
    sn, lat, se, ft, ex, acc, be, dp = (results.supernet, results.latency, results.search, results.finetune,
                                        results.export, results.accuracy, results.bench, results.deploy)
    env = be.environment
    L: list[str] = [
        "# nasdeploy pipeline report", "",
        f"- date: {prov['written']}", f"- machine: {env.get('device_name', prov.get('cpu'))}",
        f"- command: `{prov['command']}`", f"- nasdeploy {prov['nasdeploy']}, torch {prov['torch']}, "
        f"onnxruntime {env.get('onnxruntime')}, openvino {env.get('openvino')}",
        f"- CPU extensions: {', '.join(env.get('cpu_isa') or []) or '-'} (INT8 class: {env.get('int8_class', '-')})",
        f"- space: {cfg.space}, data: {cfg.data}, device: {env.get('device')}",
        "", "## Stages", "", "| stage | status | seconds | figures |", "| --- | --- | ---: | --- |",
    ]
    best, ch = se.best, se.chosen
    tables = lat.tables
    fold = ex.fold or {}
    rows = {
        "supernet": f"{sn.steps} steps ({sn.sampler}) on the train split, loss {_f(sn.loss_first)} -> "
                    f"{_f(sn.loss_last)}",
        "latency": "; ".join(f"{e}: {t.entries} entries, " + _validation(t.validation) for e, t in tables.items()),
        "search": f"target {se.target_ms} ms, aimed at {_f(se.aim_ms)} ms (headroom {_pct(se.headroom)}; fastest "
                  f"possible {_f(se.fastest_ms)} ms), {se.trials} trials, "
                  f"{len(se.finalists)} finalists timed end to end; chosen "
                  f"{_bounds(ch.latency)} measured on {best.engine} (table: {_f(ch.predicted_ms)} ms) at "
                  f"{_acc(best)}% (search-validation)",
        "finetune": f"the chosen architecture alone, {ft.steps} steps of {ft.batch_size} from its inherited weights",
        "export": f"{len(ex.engines)} engines, folded ({fold.get('stabilizers_folded')} stabilizers, "
                  f"{fold.get('bn_folded')} BN)",
        "accuracy": f"accuracy gate on {acc.images} {acc.split.replace('_', '-')} images: PyTorch float32 "
                    f"{_f(acc.torch_folded.get('top1'), 2)}%, "
                    + ", ".join(f"{k} {_f(v.top1, 2)}%" for k, v in acc.engines.items()),
        "bench": ", ".join(f"{r.backend} {r.dtype} b{r.batch}: {r.throughput:,.0f} img/s" for r in be.rows),
        "deploy": f"{dp.engine} at batch {dp.batch}: {_f(dp.vs_reference, 2)}x {dp.reference}{_established(dp)}, "
                  f"within the {dp.budget}-point budget; {_f(dp.test.get('top1'), 2)}% on {dp.test.get('images')} "
                  f"test images; {_meets(dp.latency)}",
    }
    for k, text in rows.items():
        L.append(f"| {k} | {results.status.get(k, '-')} | {_f(getattr(results, k).seconds, 1)} | {text} |")
    L += _backing(se, dp, best)
    L += _promise(se, dp)
    L += ["", "## Searched architecture against the zoo at the same latency", "",
          "Latency predicted by the calibrated tables of this machine (the fastest candidate engine); accuracy is the "
          f"supernet's estimate on {se.evaluation.get('eval_images')} search-validation images with its 95% "
          "interval; the last column is the paired difference (zoo minus searched, same images) and its 95% "
          "interval, which decides whether a difference is established.", "",
          "| model | architecture | engine | predicted latency (ms) | supernet top-1 (%) [95% interval] | "
          "paired difference [95%] |", "| --- | --- | --- | ---: | ---: | --- |",
          f"| **searched** | `{best.arch}` | {best.engine} | {_f(best.latency_ms)} | {_acc(best)} | |"]
    for name, ref in se.references.items():
        L.append(f"| {name} (architecture) | `{ref.arch}` | {ref.engine} | {_f(ref.latency_ms)} | "
                 f"{_acc_of(ref.accuracy, ref.ci95)} | {_paired(ref.paired_vs_best)} |")
    L += ["", "## Pareto fronts, one per candidate engine", "",
          "The same evaluated architectures placed in each engine's latency table (the searched front uses, per "
          "architecture, its fastest engine).", ""]
    for engine, front in se.fronts_by_engine.items():
        pts = ", ".join(f"{c.latency_ms:.3f} ms / {c.accuracy:.1f}%" for c in front)
        L.append(f"- **{engine}** ({len(front)} points): {pts or 'no architecture meets the target on it'}")
    rf = se.resolved
    if rf.archs:
        lats = ", ".join(f"{v:.3f}" for v in rf.latency_ms)
        L += ["", f"The point-estimate front below picks among estimates that are often tied. {len(rf.archs)} "
                  f"architectures are not beaten, with a paired 95% interval above 0, by any at most as slow "
                  f"(predicted {lats} ms): they span {_pct(rf.spread)} of [fastest possible, target]."]
    L += ["", "| architecture | engine | predicted latency (ms) | supernet top-1 (%) [95% interval] | params |",
          "| --- | --- | ---: | ---: | ---: |"]
    for c in se.front:
        L.append(f"| `{c.arch}` | {c.engine} | {_f(c.latency_ms)} | {_acc(c)} | {c.params:,} |")
    L += ["", "![Pareto front](search/pareto.png)", "", "## Parity of the exported artefacts (vs PyTorch float32)", "",
          "| backend | dtype | max abs | max rel | median abs | top-1 agreement | images |",
          "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for p in ex.parity:
        L.append(f"| {p['backend']} | {p['dtype']} | {p['real']['max_abs']:.2e} | {p['real']['max_rel']:.2e} | "
                 f"{p['real']['median_abs']:.2e} | {p['top1_agreement']:.2f}% | {p['images']} |")
    L += _deploy(dp, acc)
    L += ["", "## Speed (same run; speed-up over PyTorch eager fp32 of the export's folded model)", "",
          "| backend | dtype | batch | images/s | median [bounds] | p99 ms | speed-up | threads | images/s per thread |",
          "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in be.rows:
        L.append(f"| {r.backend} | {r.dtype} | {r.batch} | {r.throughput:,.1f} | {_bounds(r.latency)} | "
                 f"{r.latency['p99']:.3f} | {r.speedup:.2f}x | {r.threads or '-'} | "
                 f"{'-' if r.per_core is None else f'{r.per_core:,.1f}'} |")
    L += _serving(be.rows, be.environment, dp)
    for s in be.skipped:
        L.append(f"\nskipped {s.get('backend')}: {s['reason']}")
    for f in be.failed:
        L.append(f"\n**failed** {f['backend']} {f['dtype']} batch {f['batch']}: {f['reason']}")
    L += ["", "![throughput](bench.png)", "", "## Artefacts", "",
          f"- supernet: `{sn.supernet}`",
          "- latency tables: " + ", ".join(f"`{t.lut}`" for t in tables.values()) + " (validation plots beside them)",
          f"- search: `{out / 'search'}` (pareto.json, pareto.png, best.toml, best.pt, search.db)",
          f"- export: `{ex.out}` (manifest.json with every engine's files and hashes, parity.json, card.toml)",
          f"- deployed: `{dp.deployed}` ({dp.engine}: {', '.join(f'`{k}`' for k in dp.shipped_files)})",
          f"- bench: `{be.bench_json}`, `bench.png`", ""]
    write_json(out / "report.json", {"report_version": REPORT_VERSION, "config": asdict(cfg), "provenance": prov,
                                     "stages": results.as_dict()})
    return write_text(out / "report.md", "\n".join(L) + "\n")


def _serving(rows, environment: dict, dp: DeployResult) -> list[str]:
    """Batch 1 on the whole CPU: the layout (instances x threads) that serves the most images beside the latency
    choice, so a user can choose for either."""
    cores = environment.get("cores")
    layouts = serving_layouts(rows, cores) if cores and environment.get("device") == "cpu" else []
    if not layouts:
        return []
    best = layouts[0]
    shipped = next((x for x in layouts if x.engine == dp.engine), None)
    said = (f"the engine shipped for latency, {dp.engine}, serves {shipped.images_per_s:,.0f} images/s laid out "
            f"as {shipped.instances} x {shipped.threads} thread(s)" if shipped else
            f"the engine shipped for latency is {dp.engine}")
    return ["", f"Serving at batch 1 on all {cores} cores (estimated: instances x one instance's measured images/s, "
                "each instance on cores of its own): the most images per second come from "
                f"**{best.instances} x {best.engine} at {best.threads} thread(s)**, {best.images_per_s:,.0f} images/s "
                f"at {best.latency_ms:.3f} ms per request; {said}. The deploy rule chooses for latency; for "
                "throughput, run the layout above (`--engines BACKEND:PRECISION@THREADS` exports an engine with its "
                "threads)."]


def _validation(v: dict) -> str:
    if "calibrated" in v:
        return f"calibrated MAPE {_f(v['calibrated']['mape_pct'], 1)}% on {v['n']} archs"
    return f"given ({v.get('given')}, calibrated on {v.get('n')} archs when measured)"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _backing(se: SearchStageResult, dp: DeployResult, best: FrontPoint) -> list[str]:
    """What backs the search: the splits, the evaluation, the ranking study, and the chosen architecture's
    search-validation estimate beside its test-split figure."""
    sp, ev = se.splits or {}, se.evaluation or {}
    L = ["", "## What backs the search", "",
         f"- splits: {sp.get('train')} training images, {sp.get('search_val')} search-validation images "
         f"({sp.get('search_val_source')}, seed {sp.get('seed')}, indices hash {sp.get('search_val_hash')}), "
         f"{sp.get('test')} test images. BN recalibration, every estimate and every choice use the "
         "search-validation split; every figure below from the test split was never seen by the search.",
         f"- estimates: BN recalibrated on {ev.get('calib_batches')} x {ev.get('calib_batch_size')} images, scored on "
         f"{ev.get('eval_images')} images by {ev.get('criterion')}, compared paired on the same images",
         f"- choice: {(se.choice or {}).get('rule', '-')}"]
    study = _ranking_study()
    if study:
        L.append(f"- ranking study ({study['date']}, {study['machine']}): {study['summary']}")
    else:
        L.append("- ranking study: none shipped with this nasdeploy")
    L.append(f"- the chosen architecture: {_acc(best)}% on search-validation (supernet, before fine-tuning); "
             f"the shipped engine {_f(dp.test.get('top1'), 2)}% on the test split after fine-tuning (scored once)")
    return L


def _ranking_study() -> dict | None:
    try:
        return json.loads(RANKING_STUDY.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _deploy(dp: DeployResult, acc: AccuracyResult) -> list[str]:
    L = ["", f"## Deployment candidates (batch {dp.batch}, same bench run; the gate on {acc.images} "
             f"{acc.split.replace('_', '-')} images)", "",
         f"Every exported engine with its speed and accuracy side by side; the reference is {dp.reference}. "
         f"The gate allows a top-1 drop of {dp.budget} points against the float32 model (decided on the "
         f"estimate; the paired 95% interval beside it says how precisely {acc.images} images measure it); "
         "the fastest engine that passes and was faster than the reference in every bench round (round by round) "
         "is deployed, else the reference; where some engines hold the latency target (upper bound under it) and "
         "the reference does not, only they compete. The gate chooses, so its images are search-validation "
         f"images; the shipped engine alone is then scored on the test split. Deployed: {dp.engine} ({dp.why}).",
         "", "| engine | median ms | upper bound ms | vs target | vs reference | top-1 (%) [95% interval] | "
         "drop (points) [95% interval] | gate | deployed |", "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |"]
    for c in dp.candidates:
        g = c.gate or {}
        dci = g.get("drop_ci95") or (float("nan"), float("nan"))
        L.append(f"| {c.engine} | {_f(c.median_ms)} | {_f(c.upper_ms)} | {c.verdict or '-'} | "
                 f"{_f(c.vs_reference, 2)}x | {c.top1:.2f} {_ci(c.top1_ci95)} | "
                 f"{g.get('drop', float('nan')):.2f} [{dci[0]:.2f}, {dci[1]:.2f}] | "
                 f"{'pass' if c.passed else 'fail'} | {'**yes**' if c.engine == dp.engine else ''} |")
    as_shipped = f" as `{dp.shipped_engine}` (the threads it was timed with)" if dp.shipped_engine and \
        dp.shipped_engine != dp.engine else ""
    L += ["", f"Shipped `{dp.deployed}`{as_shipped}: "
          + ", ".join(f"`{k}` sha256 {v[:16]}" for k, v in dp.shipped_files.items())
          + (" (the same files the bench timed and the gate scored)" if dp.same_files else
             " (**differs from the files timed or gated**)"),
          f"The search predicted latency from the tables of {', '.join(dp.latency_tables)}; it targeted "
          f"{dp.searched_engine} for the chosen architecture, and {dp.engine} shipped"
          + (" (they agree)." if dp.search_targeted_it else
             " (the bench measured another engine faster, or the targeted one failed the gate).")]
    return L + _per_layer(dp)


def _per_layer(dp: DeployResult) -> list[str]:
    """The chosen architecture layer by layer on every engine's latency table: where a reduced precision gains and
    where it loses at this size (why none ships, where float32 does)."""
    if not dp.per_layer:
        return []
    engines = list(dp.per_layer[0].ms)
    ref = dp.reference if dp.reference in engines else engines[0]
    reduced = [e for e in engines if e != ref]
    total = {e: sum(c.ms[e] for c in dp.per_layer) for e in engines}
    float_ships = Engine.parse(dp.engine).dtype == "fp32"
    title = "Why no reduced precision ships here" if float_ships else "Where the reduced precisions gain and lose"
    L = ["", f"### {title}", "",
         f"The chosen architecture entry by entry on each engine's latency table (raw block medians, ms, at each "
         f"table's threads; ratio: against {ref}). At this input size the blocks are small: a reduced precision pays "
         "only where its faster arithmetic outweighs what it adds per layer (reorders and conversions at its edges, "
         "its kernels' fixed cost), and the thread count that pays is another question, answered by the bench "
         "rows above.", "",
         "| entry | " + " | ".join(engines) + " | " + " | ".join(f"{e} / {ref}" for e in reduced) + " |",
         "| --- | " + " | ".join("---:" for _ in engines + reduced) + " |"]
    for c in dp.per_layer:
        L.append(f"| {c.layer} | " + " | ".join(f"{c.ms[e]:.4f}" for e in engines) + " | "
                 + " | ".join(_ratio(c.ms[e], c.ms[ref]) for e in reduced) + " |")
    L.append("| **sum** | " + " | ".join(f"**{total[e]:.4f}**" for e in engines) + " | "
             + " | ".join(f"**{_ratio(total[e], total[ref])}**" for e in reduced) + " |")
    for e in reduced:
        slower = [c for c in dp.per_layer if c.ms[e] > c.ms[ref]]
        L.append(f"\n{e}: slower than {ref} in {len(slower)} of {len(dp.per_layer)} entries"
                 + (f" (most: {', '.join(c.layer for c in sorted(slower, key=lambda c: c.ms[ref] - c.ms[e])[:3])})"
                    if slower else "") + f"; {_ratio(total[e], total[ref])} over the whole network.")
    return L


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def _meets(p: Promise) -> str:
    if p.verdict is None:
        return "latency against the target not measured"
    word = {"meets": "meets", "misses": "**misses**", "undecided": "**undecided** against"}[p.verdict]
    said = f"{_bounds(p.bench_latency)}, {word} the {p.target_ms} ms target"
    return said + ("; the search's rounds disagree (see The latency promise)" if p.disagreement else "")


def _bounds(lat: dict | None) -> str:
    """'0.742 ms [0.731, 0.768]' from a latency record (median of round medians with its bounds)."""
    if not lat:
        return "-"
    if lat.get("upper") is None:
        return f"{lat['median']:.3f} ms (too few rounds for bounds)"
    return f"{lat['median']:.3f} ms [{lat['lower']:.3f}, {lat['upper']:.3f}]"


def _promise(se: SearchStageResult, dp: DeployResult) -> list[str]:
    """The latency the architecture was chosen under beside what ships, all timed by the same clock and statistic."""
    p = dp.latency
    ratio = p.bench_vs_search
    conf = f"{p.confidence:.0%}"
    L = ["", "## The latency promise", "",
         f"The search filtered with the latency tables, then timed its {len(se.finalists)} finalists end to end "
         "(the same clock as the bench: threads, warm-up, pauses, interleaved rounds) and chose among those whose "
         f"latency holds the target at {conf} confidence; the chosen architecture was then timed again in fresh "
         "rounds, which confirm the choice (they carry no selection bias), and the search's figure takes every round "
         "it was timed in, the qualifying and the fresh ones. Every figure is the median of the round medians, with "
         "one-sided "
         f"{conf} bounds [lower, upper] from their order statistics: the target holds (meets) when the upper bound "
         "is under it, fails (misses) when the lower bound is over it, and is undecided in between.", "",
         "| engine | target (ms) | table prediction (ms) | search, all rounds (ms) [bounds] | shipped, bench (ms) "
         "[bounds] | bench / search | verdict |", "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
         f"| {p.engine} | {_f(p.target_ms)} | {_f(p.predicted_ms)} | "
         f"{_bounds(p.search_latency)}{_other(p)} | {_bounds(p.bench_latency)} | "
         f"{_f(ratio, 2) + 'x' if ratio else '-'} | {_meets_word(p)} |"]
    if p.search_engine and p.search_engine != p.engine:
        L += ["", f"The search timed the chosen architecture on the engines of its latency tables, not on {p.engine}: "
                  f"the bench found that engine (another thread count) faster, so the search's figure above is on "
                  f"{p.search_engine}, the engine it chose under; the side-by-side timing below compares the shipped "
                  "file with the search's network at the shipped engine's threads."]
    L += _side_by_side(p)
    L += _speed(se)
    if p.warning:
        L += ["", f"Stability of the shipped engine's bench rounds: {p.warning}. The machine was busy or changed "
                  "speed while timing; the bounds widen accordingly."]
    if p.disagreement:
        L += ["", f"**The search and the bench disagree**: {p.disagreement}."]
    L += ["", "On a quiet machine of your own the rounds agree more closely: the bounds narrow and the median "
              "moves little, so an engine that meets the target here meets it there."]
    return L + _finalists(se)


def _other(p: Promise) -> str:
    return f" (on {p.search_engine})" if p.search_engine and p.search_engine != p.engine else ""


def _side_by_side(p: Promise) -> list[str]:
    """The shipped file and the search's network timed together: the gap between the search and the bench with
    the machine's speed taken out."""
    sb = p.side_by_side
    if sb is None:
        return []
    r = sb.shipped_vs_searched
    lo, hi = r.get("lower"), r.get("upper")
    if sb.agrees:
        said = f"the shipped file runs as the network the search chose under (within {AGREE:.0%} or its bounds)"
    else:
        said = (f"the shipped file runs at {r['median']:.2f}x the network the search chose under, the machine's "
                "speed taken out: what ships is not what the search timed (its weights or its export)")
    bounds = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
    machine = sb.machine_vs_search
    why = ("" if machine is None else
           f" Timed now, the search's network ran at {machine:.2f}x the search's own figure for it: that much of any "
           "gap between the search and the bench is the machine's speed, which changes between timings minutes "
           "apart and which no bound within one timing covers.")
    return ["", f"Side by side after the bench (one clean process, the search's clock, {sb.shipped['rounds']} "
                f"interleaved rounds): the shipped file {_bounds(sb.shipped)}, the search's network of the same "
                f"architecture on {sb.engine} {_bounds(sb.searched)}; shipped / searched, round by round, "
                f"{r['median']:.2f}x{bounds}: {said}.{why}"]


def _speed(se: SearchStageResult) -> list[str]:
    """The machine's speed when the search started against its latency tables, and the aim that left."""
    checks = se.speed.checks
    if not checks:
        return []
    L = ["", "### The machine's speed and the headroom", "",
         "Before the search, a few random architectures were timed end to end on every engine and compared with the "
         "latency tables (measured minutes before): the tables were rescaled by the median ratio, so the search's "
         "constraint speaks of the machine as it ran then. A bound covers the noise within one timing, not a change "
         "of the machine's speed before the next one; the largest change seen (the ratio either way, or two speed "
         f"modes within the rounds) is kept as headroom: the search aimed at {_f(se.aim_ms)} ms, the "
         f"{_f(se.target_ms)} ms target / (1 + {_pct(se.headroom)}).", "",
         "| engine | architectures | table (ms) | now (ms) | now / table | largest change |",
         "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for engine, c in checks.items():
        L.append(f"| {engine} | {len(c['archs'])} | {', '.join(_f(v) for v in c['predicted_ms'])} | "
                 f"{', '.join(_f(v) for v in c['measured_ms'])} | {_f(c['factor'], 3)}x | "
                 f"{_pct(c.get('largest_change'))} |")
    return L


def _finalists(se: SearchStageResult) -> list[str]:
    """Every finalist with the figures the choice was made on, each labelled."""
    if not se.finalists:
        return []
    chosen = se.best.arch
    L = ["", "### The finalists", "",
         "Predicted: the calibrated latency table; measured: end to end on this machine, median of round medians, "
         "and its upper bound; race top-1: on every search-validation image, BN recalibrated; study top-1: on the "
         "search's evaluation images.", "",
         "| | architecture | engine | predicted (ms) | measured (ms) | upper bound (ms) | rounds | verdict | "
         "race top-1 (%) | study top-1 (%) |", "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for f in sorted(se.finalists, key=lambda f: f.latency_ms):
        L.append(f"| {'**chosen**' if f.arch == chosen else ''} | `{f.arch}` | {f.engine} | {_f(f.predicted)} | "
                 f"{_f(f.measured)} | {_f(f.upper_ms)} | {f.rounds or '-'} | {f.verdict or '-'} | "
                 f"{_f(f.race_top1, 2)} | {_f(f.study_top1, 2)} |")
    second = second_round_text(se.choice or {})
    if second:
        L.append(f"\n{second}")
    nc = (se.choice or {}).get("not_confirmed") or []
    for x in nc:
        L.append(f"\n`{x['arch']}` qualified in its first rounds but its fresh rounds said {x['verdict']}: the next "
                 "finalist was taken.")
    return L


def _meets_word(p: Promise) -> str:
    v = p.verdict
    return "-" if v is None else {"meets": "meets", "misses": "**misses**", "undecided": "**undecided**"}[v]


def _established(dp: DeployResult) -> str:
    e = dp.faster_in_every_round
    if e is None:
        return ""
    if e:
        if dp.fastest != dp.engine:
            return (f" (faster in every bench round; {dp.fastest} had the higher median but was not faster "
                    "in every round)")
        return " (faster in every bench round)"
    return (f"; {dp.fastest} measured faster, but no candidate was faster in every bench round: not "
            "established, so the reference ships")


def _acc(c: FrontPoint) -> str:
    """A candidate's top-1 estimate with its 95% interval, where it has one."""
    return _acc_of(c.accuracy, c.ci95)


def _acc_of(accuracy: float | None, ci) -> str:
    text = _f(accuracy, 2)
    return f"{text} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else text


def _paired(p) -> str:
    if not p:
        return "-"
    mean, lo, hi = p
    verdict = "higher" if lo > 0 else "lower" if hi < 0 else "not distinguishable"
    return f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]: {verdict}"
