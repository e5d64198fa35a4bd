"""Search throughput with 1 and 2 workers on one study in a real PostgreSQL, at equal total threads.

A throwaway PostgreSQL cluster is started from the installed binaries (as tests/conftest.py does); a small SCARLET
supernet (built-in data) is trained once; then the same search (the same budget) runs with one worker of 2 threads,
and with two workers of 1 thread each. Reported: architectures evaluated per minute, and per trial the share of
its wall time spent outside the evaluation (sampling, the database's round trips, waiting), from each trial's
start and end in the study and the evaluation's own time stored with it.

    python -m benchmarks.search_workers --json benchmarks/results/search_workers.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cmd(sn, lut, target, storage, study, out, args) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "search", "--supernet", str(sn), "--lut", str(lut),
            "--latency-target", target, "--population", str(args.population), "--evaluations", str(args.evaluations),
            "--calib-batches", "2", "--eval-images", str(args.eval_images), "--storage", storage, "--study-name",
            study, "--out", str(out), "--no-progress"]


def _worker(storage, study) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "search-worker", "--storage", storage, "--study-name", study,
            "--no-progress"]


def measure(storage: str, study: str) -> dict:
    import optuna

    s = optuna.load_study(study_name=study, storage=storage)
    done = [t for t in s.get_trials(states=(optuna.trial.TrialState.COMPLETE,)) if "score" in t.user_attrs]
    ev = [t for t in done if t.user_attrs.get("evaluated")]
    wall = [(t.datetime_complete - t.datetime_start).total_seconds() for t in ev]
    share = [1 - t.user_attrs["eval_seconds"] / w for t, w in zip(ev, wall) if w > 0]
    start = min(t.datetime_start for t in done)
    end = max(t.datetime_complete for t in done)
    span = (end - start).total_seconds()
    return {"trials": len(done), "evaluated": len(ev), "span_seconds": round(span, 1),
            "evaluated_per_minute": round(60 * len(ev) / span, 2),
            "eval_seconds_median": round(statistics.median(t.user_attrs["eval_seconds"] for t in ev), 3),
            "trial_seconds_median": round(statistics.median(wall), 3),
            "outside_evaluation_share_median": round(statistics.median(share), 4),
            "workers": sorted({t.user_attrs["worker"] for t in done})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/search_workers")
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--evaluations", type=int, default=32)
    ap.add_argument("--eval-images", type=int, default=1000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from benchmarks.postgres import postgres_cluster

    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.io import provenance, write_json
    from nasdeploy.isa import this_cpu
    from nasdeploy.latency import LatencyTable, Settings, measure_table
    from nasdeploy.nas.train import TrainConfig, train_supernet
    from nasdeploy.search.study import wait_for_study

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sn = out / "sn" / "supernet.pt"
    if not sn.exists():
        train_supernet(TrainConfig(space="scarlet", steps=30, batch_size=16, ckpt_every=30, device="cpu"), out / "sn",
                       resume=(out / "sn" / "checkpoint.pt").exists())
    lut = out / "lut.json"
    measure_table(Settings.for_input("scarlet", "cpu", "onnxruntime", 1, "fp32", BUILTIN_SETTING, warmup=2,
                                     repeats=5), lut, progress=False)
    target = f"{1.5 * LatencyTable.load(lut).fastest()[1]:.4f}ms"
    res = {}
    with postgres_cluster() as url:
        env1 = {**os.environ, "OMP_NUM_THREADS": "2", "NASDEPLOY_THREADS": "2"}
        t0 = time.time()
        subprocess.run(_cmd(sn, lut, target, url, "one", out / "one", args), env=env1, check=True,
                       capture_output=True)
        res["one_worker_2_threads"] = measure(url, "one") | {"seconds": round(time.time() - t0, 1)}
        env2 = {**os.environ, "OMP_NUM_THREADS": "1", "NASDEPLOY_THREADS": "1"}
        t0 = time.time()
        a = subprocess.Popen(_cmd(sn, lut, target, url, "two", out / "two", args), env=env2,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_study(url, "two", 300)
        subprocess.run(_worker(url, "two"), env=env2, check=True, capture_output=True)
        a.wait()
        res["two_workers_1_thread_each"] = measure(url, "two") | {"seconds": round(time.time() - t0, 1)}
    res |= {"budget": args.evaluations, "eval_images": args.eval_images, "target": target,
            "cpu": this_cpu().as_dict(), "command": " ".join(sys.argv), "provenance": provenance()}
    print(json.dumps({k: v for k, v in res.items() if k.startswith(("one", "two"))}, indent=1))
    if args.json:
        write_json(args.json, res)


if __name__ == "__main__":
    main()
