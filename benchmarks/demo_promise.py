"""The latency promise across demo runs: for each finished `make demo` folder, the search's figure for the chosen
architecture on the shipped engine (all its rounds, and its fresh rounds alone), the pipeline's bench of the shipped
engine, their ratio, the shipped file and the search's network timed side by side after the bench (their ratio
with the machine's speed taken out, and the machine's drift since the search), and the standalone benches of ``deployed/`` run after it (`nasdeploy bench RUN/deployed
--json ...`), each against the target the run was chosen under.

    python -m benchmarks.demo_promise RUN [RUN ...] [--bench RUN=B.json,B.json,...] --json OUT.json

Reads only what the runs recorded (``report.json``): every figure is recomputed from the recorded round medians by
nasdeploy's own statistic (``RoundLatency``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nasdeploy.bench.stats import RoundLatency


def _figure(rounds: list[float], confidence: float) -> dict:
    lat = RoundLatency.of(rounds, confidence)
    return {"median": lat.median, "lower": lat.lower, "upper": lat.upper, "rounds": lat.rounds}


def _same(row: dict, engine: str) -> bool:
    """Whether a standalone bench row of the deployed folder is ``engine`` (shipped naming the threads it was timed
    with: onnxruntime:fp32 ships as onnxruntime:fp32@2)."""
    head, _, threads = engine.partition("@")
    return f"{row['backend']}:{row['dtype']}" == head and (not threads or row.get("engine_threads") == int(threads))


def promise(run: Path, benches: list[Path]) -> dict:
    r = json.loads((run / "report.json").read_text())
    se, dp = r["stages"]["search"], r["stages"]["deploy"]
    p = dp["latency"]
    engine, target, conf = p["engine"], se["target_ms"], p["confidence"]
    f = next(x for x in se["finalists"] if x["arch"] == se["chosen"]["arch"])
    # the search's figure: on the shipped engine where the search timed it, else on the engine it chose under
    searched = p.get("search_engine") or (engine if engine in f["timing"] else se["chosen"]["engine"])
    qual = f["timing"][searched]["round_medians"]
    fresh = (f.get("retimed") or {}).get(searched, {}).get("round_medians", [])
    bench = p["bench_latency"]
    checks = (se.get("speed") or {}).get("checks") or {}
    out = {"run": str(run), "date": r.get("date"), "engine": engine, "search_engine": searched,
           "shipped_as": dp.get("shipped_engine") or engine, "target_ms": target, "confidence": conf,
           "aim_ms": se.get("aim_ms"), "headroom": se.get("headroom"),
           "speed_factors": {e: c["factor"] for e, c in checks.items()},
           "search_all_rounds": _figure(qual + fresh, conf),
           "search_fresh_rounds": _figure(fresh, conf) if fresh else None,
           "pipeline_bench": {k: bench[k] for k in ("median", "lower", "upper", "rounds")},
           "verdict": p["verdict"], "search_verdict": se["chosen"].get("verdict"),
           "search_confirmed": (se.get("choice") or {}).get("confirmed"),
           "stage_seconds": {k: v.get("seconds") for k, v in r["stages"].items()
                             if isinstance(v, dict) and "seconds" in v},
           "standalone": []}
    out["bench_vs_search_all"] = bench["median"] / out["search_all_rounds"]["median"]
    if fresh:
        out["bench_vs_search_fresh"] = bench["median"] / out["search_fresh_rounds"]["median"]
    # the pipeline's bench of the engine the search's figure is of (the same engine, the same statistic), where
    # another engine shipped
    rows = json.loads((run / "bench.json").read_text())["rows"]
    same = next((x for x in rows if x.get("files") and x["batch"] == p["batch"]
                 and f"{x['backend']}:{x['dtype']}" + (f"@{x['engine_threads']}" if x.get("engine_threads") else "")
                 == searched), None)
    if same is not None:
        out["pipeline_bench_search_engine"] = {k: same["latency"][k] for k in ("median", "lower", "upper", "rounds")}
        out["bench_of_search_engine_vs_search"] = same["latency"]["median"] / out["search_all_rounds"]["median"]
    sb = p.get("side_by_side")
    if sb:  # the shipped file and the search's network timed together after the bench
        out["side_by_side"] = {"shipped": _figure(sb["shipped"]["round_medians"], conf),
                               "searched": _figure(sb["searched"]["round_medians"], conf),
                               "shipped_vs_searched": _figure(sb["shipped_vs_searched"]["round_medians"], conf),
                               "machine_vs_search": sb["machine_vs_search"]}
    for b in benches:
        rows = [x for x in json.loads(b.read_text())["rows"] if x.get("files") and _same(x, engine)
                and x["batch"] == 1]
        for x in rows:
            out["standalone"].append({"file": str(b), "median": x["latency"]["median"], "lower": x["latency"]["lower"],
                                      "upper": x["latency"]["upper"], "under_target": x["latency"]["median"] < target,
                                      "verdict": (x.get("target") or {}).get("verdict")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--bench", action="append", default=[], help="RUN=B1.json,B2.json: standalone benches of RUN")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    benches = {Path(k): [Path(v) for v in vs.split(",")] for k, _, vs in (b.partition("=") for b in a.bench)}
    results = [promise(run, benches.get(run, [])) for run in a.runs]
    for x in results:
        s, b = x["search_all_rounds"], x["pipeline_bench"]
        aim = f" (aimed at {x['aim_ms']:.3f})" if x.get("aim_ms") else ""
        print(f"{x['run']}: {x['engine']} (search on {x['search_engine']}) target {x['target_ms']:.3f} ms{aim}; "
              f"search {s['median']:.3f} "
              f"[{s['lower']:.3f}, {s['upper']:.3f}] ({s['rounds']} rounds); bench {b['median']:.3f} "
              f"[{b['lower']:.3f}, {b['upper']:.3f}]; {x['bench_vs_search_all']:.2f}x; search says "
              f"{x['search_verdict']}, bench {x['verdict']}; standalone "
              + ", ".join(f"{y['median']:.3f} ({y['verdict']})" for y in x["standalone"]))
        if x.get("bench_of_search_engine_vs_search") and x["search_engine"] != x["engine"]:
            print(f"  the pipeline's bench of {x['search_engine']}: "
                  f"{x['pipeline_bench_search_engine']['median']:.3f}, {x['bench_of_search_engine_vs_search']:.2f}x "
                  "the search's figure")
        if x.get("side_by_side"):
            r, m = x["side_by_side"]["shipped_vs_searched"], x["side_by_side"]["machine_vs_search"]
            print(f"  side by side: shipped / searched {r['median']:.3f}x [{r['lower']}, {r['upper']}]; the machine "
                  f"now / at the search {'-' if m is None else f'{m:.3f}x'}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
