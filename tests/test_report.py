"""The pipeline's report (nasdeploy/pipeline/report.py), written from the stages' typed results: every stage's row with
its status and time, the deploy verdict as the rule decided it, and report.json holding what the stages returned
(tests/test_pipeline.py reads a real run's report back against its JSON)."""
from __future__ import annotations

import json

from nasdeploy.pipeline import PipelineConfig, PipelineResults
from nasdeploy.pipeline.report import write_report
from nasdeploy.bench.run import BenchRow
from nasdeploy.pareto import FrontPoint
from nasdeploy.pipeline.results import (AccuracyResult, BenchStageResult, DeployCandidate, DeployResult,
                                        EngineAccuracy, ExportStageResult, FinetuneResult, LatencyResult, Promise,
                                        SearchStageResult, SpeedRecord, SupernetResult, TableRecord)
from nasdeploy.search.config import Chosen, FinalistRecord, Reference, ResolvedFront

ENGINES = ("onnxruntime:fp32", "onnxruntime:int8")
FILES = {"model.int8.onnx": "ab" * 32}
SEARCH_LAT = {"median": 0.91, "lower": 0.9, "upper": 0.925, "rounds": 5}
BENCH_LAT = {"median": 0.496, "lower": 0.49, "upper": 0.51, "p99": 0.575, "rounds": 5}
FINALIST = FinalistRecord(arch="k3e3-k5e6", trial=2, engine=ENGINES[1], latency_ms=0.91, upper_ms=0.92, lower_ms=0.9,
                          verdict="meets", predicted_ms={ENGINES[1]: 0.95}, measured_ms={ENGINES[1]: 0.905},
                          round_medians={ENGINES[1]: [0.9, 0.91, 0.905, 0.91, 0.9]},
                          timing={ENGINES[1]: {"rounds": 5}}, retimed={}, macs=5678, params=1234, study_top1=70.25,
                          race_top1=71.5, race_loss=1.1, race_images=100, score=71.5)

SPEED = SpeedRecord(headroom=0.0997, luts=["search/tables/lut_x.json"], checks={
    ENGINES[1]: {"engine": ENGINES[1], "factor": 1.0997, "largest_change": 0.0997, "archs": ["a", "b"],
                 "predicted_ms": [0.5, 0.75], "measured_ms": [0.55, 0.8248]}})
CHOSEN = Chosen(arch="k3e3-k5e6", engine=ENGINES[1], measured_ms=0.91, predicted_ms=0.95, target_ms=0.8493,
                confidence=0.9, latency=SEARCH_LAT, fresh=None, verdict="meets", meets_target=True, retimed=False,
                measured_by_engine={ENGINES[1]: 0.91}, latency_by_engine={ENGINES[1]: SEARCH_LAT},
                predicted_by_engine={ENGINES[1]: 0.95}, race_top1=71.5, race_images=100)


def _results(tmp_path) -> PipelineResults:
    best = FrontPoint(arch="k3e3-k5e6", accuracy=71.25, ci95=(68.0, 74.0), latency_ms=0.91, engine=ENGINES[1],
                     params=1234, macs=5678, feasible=True, trial=2)
    gate = {"drop": 0.25, "drop_ci95": [-0.5, 1.0], "passed": True, "agreement": 99.0}
    r = PipelineResults()
    r.add("supernet", SupernetResult(seconds=10.0, supernet="sn.pt", steps=4, loss_first=2.5, loss_last=1.25,
                                     space="scarlet", sampler="fair", splits={}), "cached")
    r.add("latency", LatencyResult(seconds=1.0, input={}, tables={e: TableRecord(
        f"lut_{e}.json", "", 243, {"n": 5, "calibrated": {"mape_pct": 3.25}}) for e in ENGINES}), "cached")
    r.add("search", SearchStageResult(seconds=7.0, target_ms=0.934, fastest_ms=0.279, candidates=[best] * 4,
                                      front=[best], best=best, accuracy_label="supernet top-1 (%)",
                                      references={"scarlet_a": Reference("k5e6-k3e3", 1.25, ENGINES[0], 70.5,
                                                                         (67.0, 73.5), 1.2, [-0.75, -2.5, 1.0])},
                                      fronts_by_engine={ENGINES[1]: [best]}, spread=0.35,
                                      resolved=ResolvedFront([best.arch], [best.latency_ms], 0.25),
                                      choice={"rule": "best estimate"}, splits={}, evaluation={"eval_images": 100},
                                      card="best.toml", pareto_png="pareto.png", finalists=[FINALIST], chosen=CHOSEN,
                                      aim_ms=0.8493, headroom=0.0997, speed=SPEED),
          "ran")
    r.add("finetune", FinetuneResult(seconds=3.0, card="model.toml", steps=5, batch_size=16, lr=0.02), "ran")
    r.add("export", ExportStageResult(seconds=8.0, out="export", artefacts={}, engines=list(ENGINES), skipped=[],
                                      fold={"stabilizers_folded": 2, "bn_folded": 55}, parity=[], quantization={}),
          "ran")
    r.add("accuracy", AccuracyResult(seconds=0.5, images=200, split="search_val", reference="torch:fp32",
                                     torch_folded={"top1": 15.5},
                                     engines={e: EngineAccuracy(top1=15.5, top1_ci95=[11.1, 21.2], top5=60.0,
                                                                images=200, gate=gate, files=FILES)
                                              for e in ENGINES}), "ran")
    r.add("bench", BenchStageResult(seconds=2.5, bench_json="bench.json", environment={"device": "cpu"}, skipped=[],
                                    rows=[BenchRow(model="export", backend="onnxruntime", dtype="int8", batch=1,
                                                   throughput=2015.5, latency=BENCH_LAT, speedup=14.43)]), "ran")
    cands = [DeployCandidate(engine=e, top1=15.5, top1_ci95=[11.1, 21.2], gate=gate, median_ms=m, upper_ms=u,
                             verdict="meets", vs_reference=v, throughput=1000 / m, round_medians=[m] * 5)
             for e, m, u, v in zip(ENGINES, (0.757, 0.496), (0.8, 0.51), (1.0, 1.53))]
    r.add("deploy", DeployResult(seconds=0.0, engine=ENGINES[1], fastest=ENGINES[1], reference=ENGINES[0],
                                 faster_in_every_round=True, faster_in_every_round_by_engine={}, throughput=2015.5,
                                 files=FILES, holding_target=list(ENGINES), why="faster than the reference in every "
                                                                               "bench round", batch=1, budget=0.5, vs_reference=1.53, deployed="deployed",
                                 shipped_files=FILES, timed_files=FILES, gated_files=FILES, same_files=True,
                                 searched_engine=ENGINES[1], search_targeted_it=True,
                                 latency_tables={e: f"lut_{e}.json" for e in ENGINES}, candidates=cands,
                                 test={"engine": ENGINES[1], "split": "test", "top1": 14.75, "images": 400},
                                 latency=Promise(engine=ENGINES[1], batch=1, target_ms=0.934, confidence=0.9,
                                                 predicted_ms=0.95, search_measured_ms=0.91, search_latency=SEARCH_LAT,
                                                 disagreement=None, bench_median_ms=0.496, bench_latency=BENCH_LAT,
                                                 bench_vs_search=0.545, verdict="meets", meets_target=True)), "ran")
    return r


def test_the_report_reads_the_stages_results(tmp_path):
    results = _results(tmp_path)
    prov = {"written": "2026-12-04T05:17:47+00:00", "command": "nasdeploy pipeline", "nasdeploy": "0.1.0",
            "torch": "2.14.1", "cpu": "x86_64"}
    md = write_report(tmp_path, PipelineConfig(out=str(tmp_path)), results, prov).read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert rows["supernet"] == "| supernet | cached | 10.0 | 4 steps (fair) on the train split, loss 2.500 -> 1.250 |"
    assert rows["finetune"] == ("| finetune | ran | 3.0 | the chosen architecture alone, 5 steps of 16 from its "
                                "inherited weights |")
    assert "| export | ran | 8.0 | 2 engines, folded (2 stabilizers, 55 BN) |" in md
    assert ("| deploy | ran | 0.0 | onnxruntime:int8 at batch 1: 1.53x onnxruntime:fp32 (faster in every bench "
            "round), within the 0.5-point budget; 14.75% on 400 test images; 0.496 ms [0.490, 0.510], meets the "
            "0.934 ms target |") in md
    # the latency promise, every figure with its bounds
    assert ("| onnxruntime:int8 | 0.934 | 0.950 | 0.910 ms [0.900, 0.925] | 0.496 ms [0.490, 0.510] | 0.55x | meets |"
            in md)
    assert "| **chosen** | `k3e3-k5e6` | onnxruntime:int8 | 0.950 | 0.905 | 0.920 | 5 | meets | 71.50 | 70.25 |" in md
    # the machine's speed when the search started, and the aim it left
    assert "target 0.934 ms, aimed at 0.849 ms (headroom 10%; fastest possible 0.279 ms)" in md
    assert "| onnxruntime:int8 | 2 | 0.500, 0.750 | 0.550, 0.825 | 1.100x | 10% |" in md
    assert "the search aimed at 0.849 ms, the 0.934 ms target / (1 + 10%)" in md
    assert "accuracy gate on 200 search-val images" in md
    assert ("| onnxruntime:int8 | 0.496 | 0.510 | meets | 1.53x | 15.50 [11.1, 21.2] | 0.25 [-0.50, 1.00] | pass | "
            "**yes** |") in md
    assert "(the same files the bench timed and the gate scored)" in md and "(they agree)." in md
    rep = json.loads((tmp_path / "report.json").read_text())
    assert list(rep["stages"]) == list(results.status)
    assert rep["stages"]["finetune"] == {"seconds": 3.0, "card": "model.toml", "steps": 5, "batch_size": 16,
                                         "lr": 0.02, "status": "ran"}
    assert rep["stages"] == json.loads(json.dumps(results.as_dict()))


def test_every_stage_result_loads_back_as_its_typed_records(tmp_path):
    """A stage marker holds the result's records as JSON tables; loaded back they are the same typed records (a
    bench row, a deploy candidate, the promise, the chosen architecture, a finalist, a zoo reference, a front
    point), so a rerun's report reads what a run's did."""
    from nasdeploy.io import write_json
    from nasdeploy.pipeline.results import RESULT_TYPES

    results = _results(tmp_path)
    back = {}
    for stage in results.status:
        r = getattr(results, stage)
        back[stage] = RESULT_TYPES[stage].load(write_json(tmp_path / f"stage_{stage}.json", r.as_dict()))
        assert back[stage] is not None and back[stage].as_dict() == r.as_dict(), stage
    assert isinstance(back["deploy"].latency, Promise) and back["deploy"].latency == results.deploy.latency
    assert all(isinstance(c, DeployCandidate) for c in back["deploy"].candidates)
    assert isinstance(back["bench"].rows[0], BenchRow) and back["bench"].rows[0].median_ms == 0.496
    assert back["search"].chosen == CHOSEN and back["search"].best == results.search.best
    se = back["search"]  # the search's records: its finalists, the zoo references, the fronts
    assert se.finalists == [FINALIST] and se.references == results.search.references
    assert se.resolved == results.search.resolved and se.fronts_by_engine == results.search.fronts_by_engine
    assert isinstance(back["latency"].tables[ENGINES[0]], TableRecord)
