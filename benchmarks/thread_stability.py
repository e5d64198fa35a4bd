"""Where do the two speed modes come from? One ONNX file timed by ONNX Runtime at 1 and at 2 intra-op threads,
interleaved round by round, many rounds: each thread count's median of round medians, its bounds, its spread and
whether its rounds fall into two speed modes (``nasdeploy.bench.stats``), and how often a round of one is in the
slow mode while the other's is not.

On a 2-vCPU VM a 2-thread runtime needs both vCPUs at once; if the hypervisor takes one away, every parallel
operator waits for it. A 1-thread runtime needs one. If the two modes the demos met are that, the 1-thread rows have
fewer of them.

    python -m benchmarks.thread_stability runs/demo/deployed/model.onnx --rounds 40 --json OUT.json
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

from nasdeploy.bench.env import environment
from nasdeploy.bench.stats import RoundLatency
from nasdeploy.io import provenance


def session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def round_median(sess, feed: dict, calls: int) -> float:
    """The median of ``calls`` timed calls (ms)."""
    ts = []
    for _ in range(calls):
        t0 = time.perf_counter()
        sess.run(None, feed)
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx", type=Path)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    counts = [int(t) for t in a.threads.split(",")]
    sessions = {t: session(a.onnx, t) for t in counts}
    inp = next(iter(sessions.values())).get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    feed = {inp.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    for s in sessions.values():  # warm-up
        round_median(s, feed, a.calls)
    rounds: dict[int, list[float]] = {t: [] for t in counts}
    rng = random.Random(0)
    for _ in range(a.rounds):
        order = list(counts)
        rng.shuffle(order)
        for t in order:
            time.sleep(0.3)  # the clock's pause: the previous runtime's threads stop spinning
            rounds[t].append(round_median(sessions[t], feed, a.calls))
    out = {"onnx": str(a.onnx), "rounds": a.rounds, "calls": a.calls, "environment": environment("cpu"),
           "provenance": provenance(), "threads": {}}
    for t, rs in rounds.items():
        lat = RoundLatency.of(rs, 0.9)
        st = lat.stability
        out["threads"][str(t)] = {"latency": lat.as_dict(), "round_medians": rs}
        print(f"{t} thread(s): median {lat.median:.3f} ms [{lat.lower:.3f}, {lat.upper:.3f}], spread "
              f"{st.spread_pct:.1f}%, modes {st.modes or '-'} {st.mode_rounds or ''}, slowest/fastest round "
              f"{max(rs) / min(rs):.2f}")
    if len(counts) == 2:
        a1, a2 = (rounds[t] for t in counts)
        slow1 = [x > 1.15 * statistics.median(a1) for x in a1]
        slow2 = [x > 1.15 * statistics.median(a2) for x in a2]
        out["slow_rounds"] = {str(counts[0]): sum(slow1), str(counts[1]): sum(slow2),
                              "both": sum(x and y for x, y in zip(slow1, slow2))}
        print(f"rounds over 1.15x their median: {counts[0]} thread(s) {sum(slow1)}, {counts[1]} threads "
              f"{sum(slow2)}, both in the same round {out['slow_rounds']['both']}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
