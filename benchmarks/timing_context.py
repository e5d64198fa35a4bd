"""Why did the pipeline's bench read slower than the search and than a standalone bench? The same engine files timed
inside a process that has done the pipeline's work, stage by stage, and in a fresh process, back to back.

Given a finished pipeline run (``runs/demo``), a copy of it goes through the stages that ran between the search
and the bench (fine-tune, export, accuracy gate) in this process, by the pipeline's own code. Before the first
stage and after each one, the run's exported engines at batch 1 are timed by nasdeploy's clock in this process
and in a fresh process (``--time-only``), alternately, ``--pairs`` times: each pair's ratio (in this process /
fresh) does not depend on the machine's speed at the time. Beside them: this process's threads, and the CPU it
burns while idle for a second (a thread pool left spinning shows there).

    python -m benchmarks.timing_context runs/demo --json benchmarks/results/timing_context.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def time_export(export: Path, engines: list[str] | None = None, rounds: int = 5) -> dict[str, float]:
    """Each engine of ``export`` at batch 1: the median of ``rounds`` interleaved round medians (ms)."""
    import torch

    from nasdeploy.bench.timing import Clock
    from nasdeploy.export.manifest import ExportFolder

    folder = ExportFolder.open(export)
    names = engines or list(folder.engines)
    runners = [folder.runner(e, "cpu", (1, 1)) for e in names]
    x = torch.randn(1, 3, folder.setting.size, folder.setting.size)
    for r in runners:
        r(x)
    out = Clock(rounds=rounds).time_all([r.timed(x) for r in runners])
    return {e: statistics.median(k.median for k in rs) for e, rs in zip(names, out)}


def fresh(export: Path, rounds: int) -> dict[str, float]:
    r = subprocess.run([sys.executable, "-m", "benchmarks.timing_context", str(export), "--time-only",
                        "--rounds", str(rounds)], capture_output=True, text=True, check=True,
                       cwd=Path(__file__).resolve().parents[1])
    return json.loads(r.stdout.strip().splitlines()[-1])


def idle_cpu(seconds: float = 1.0) -> float:
    """CPU seconds this process burns per second while its main thread sleeps."""
    t0 = os.times()
    time.sleep(seconds)
    t1 = os.times()
    return round((t1.user - t0.user + t1.system - t0.system) / seconds, 3)


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def compare(export: Path, pairs: int, rounds: int) -> dict:
    inside, outside = [], []
    for k in range(pairs):  # alternate which comes first
        if k % 2 == 0:
            inside.append(time_export(export, rounds=rounds))
            outside.append(fresh(export, rounds))
        else:
            outside.append(fresh(export, rounds))
            inside.append(time_export(export, rounds=rounds))
    engines = list(inside[0])
    return {"threads": threads(), "idle_cpu_per_s": idle_cpu(),
            "engines": {e: {"in_process_ms": [round(p[e], 4) for p in inside],
                            "fresh_process_ms": [round(p[e], 4) for p in outside],
                            "ratio_per_pair": [round(a[e] / b[e], 3) for a, b in zip(inside, outside)],
                            "ratio_median": round(statistics.median(a[e] / b[e] for a, b in zip(inside, outside)),
                                                  3)}
                        for e in engines}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a finished pipeline run folder (runs/demo)")
    ap.add_argument("--time-only", action="store_true", help="time RUN (an export folder) and print JSON")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.time_only:
        print(json.dumps(time_export(Path(args.run), rounds=args.rounds)))
        return 0

    from nasdeploy.io import provenance, write_json
    from nasdeploy.bench.env import environment
    from nasdeploy.pipeline.config import PipelineConfig
    from nasdeploy.pipeline.run import Pipeline

    run = Path(args.run)
    export = run / "export"
    cfg = PipelineConfig.read(run / "config.toml") if (run / "config.toml").exists() else PipelineConfig.demo()
    work = Path(tempfile.mkdtemp(prefix="nasdeploy-context-"))
    try:
        for name in ("supernet", "search", "config.json"):
            src = run / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / name)
        for marker in run.glob("stage_*.json"):
            shutil.copy2(marker, work / marker.name)
        for lut in run.glob("lut_*.json"):
            shutil.copy2(lut, work / lut.name)
        cfg.out = str(work)
        p = Pipeline(cfg, progress=False)
        from nasdeploy.pipeline.results import RESULT_TYPES

        for stage in ("supernet", "latency", "search"):
            p.results.add(stage, RESULT_TYPES[stage].load(work / f"stage_{stage}.json"), "cached")
        phases = {"before any stage (imports only)": compare(export, args.pairs, args.rounds)}
        print(json.dumps(phases, indent=1), flush=True)
        for stage in ("finetune", "export", "accuracy"):
            t0 = time.time()
            p.results.add(stage, p.stage(stage), "ran")
            phases[f"after {stage} ({time.time() - t0:.0f} s)"] = compare(export, args.pairs, args.rounds)
            print(stage, json.dumps(phases[list(phases)[-1]], indent=1), flush=True)
        import gc

        gc.collect()
        phases["after gc.collect()"] = compare(export, args.pairs, args.rounds)
        print(json.dumps(phases[list(phases)[-1]], indent=1), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        write_json(Path(args.json), {"run": str(run), "phases": phases, "environment": environment("cpu"),
                                     "provenance": provenance(), "rounds": args.rounds, "pairs": args.pairs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
