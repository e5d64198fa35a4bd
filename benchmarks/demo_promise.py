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


def promise(run: Path, benches: list[Path]) -> dict:
    r = json.loads((run / "report.json").read_text())
    se, dp = r["stages"]["search"], r["stages"]["deploy"]
    p = dp["latency"]
    engine, target, conf = p["engine"], se["target_ms"], p["confidence"]
    f = next(x for x in se["finalists"] if x["arch"] == se["chosen"]["arch"])
    qual = f["timing"][engine]["round_medians"]
    fresh = (f.get("retimed") or {}).get(engine, {}).get("round_medians", [])
    bench = p["bench_latency"]
    checks = (se.get("speed") or {}).get("checks") or {}
    out = {"run": str(run), "date": r.get("date"), "engine": engine, "target_ms": target, "confidence": conf,
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
    sb = p.get("side_by_side")
    if sb:  # the shipped file and the search's network timed together after the bench
        out["side_by_side"] = {"shipped": _figure(sb["shipped"]["round_medians"], conf),
                               "searched": _figure(sb["searched"]["round_medians"], conf),
                               "shipped_vs_searched": _figure(sb["shipped_vs_searched"]["round_medians"], conf),
                               "machine_vs_search": sb["machine_vs_search"]}
    for b in benches:
        rows = [x for x in json.loads(b.read_text())["rows"] if f"{x['backend']}:{x['dtype']}" == engine
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
        print(f"{x['run']}: {x['engine']} target {x['target_ms']:.3f} ms{aim}; search {s['median']:.3f} "
              f"[{s['lower']:.3f}, {s['upper']:.3f}] ({s['rounds']} rounds); bench {b['median']:.3f} "
              f"[{b['lower']:.3f}, {b['upper']:.3f}]; {x['bench_vs_search_all']:.2f}x; search says "
              f"{x['search_verdict']}, bench {x['verdict']}; standalone "
              + ", ".join(f"{y['median']:.3f} ({y['verdict']})" for y in x["standalone"]))
        if x.get("side_by_side"):
            r = x["side_by_side"]["shipped_vs_searched"]
            print(f"  side by side: shipped / searched {r['median']:.3f}x [{r['lower']}, {r['upper']}]; the machine "
                  f"now / at the search {x['side_by_side']['machine_vs_search']:.3f}x")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
