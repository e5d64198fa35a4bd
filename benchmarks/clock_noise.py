"""How noisy is this machine's clock? Round medians of small networks timed together, round after round, by
nasdeploy's clock: the data ``benchmarks/clock_sim.py`` fits its noise model to.

``--archs`` random SCARLET architectures in the built-in setting (28 px, batch 1: what `make demo` searches and
ships), folded, on each engine of ``--engines`` (those this machine can run), every architecture of one engine
timed in ``--rounds`` interleaved rounds of ``--repeats`` calls (the clock's warm-up and pauses), one group per
engine. Each group's round medians are written as they are, with the machine and its instruction set.

    python -m benchmarks.clock_noise --json benchmarks/results/clock_noise_avx512.json
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--engines", default="onnxruntime:fp32,openvino:bf16,onnxruntime:int8")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)

    import torch

    from nasdeploy.backends import dtype_reason, parse_engines, unavailable_reason
    from nasdeploy.bench.env import environment
    from nasdeploy.bench.stats import RoundLatency
    from nasdeploy.bench.timing import Clock
    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.io import provenance, write_json
    from nasdeploy.latency.measure import runner_for, Settings
    from nasdeploy.fold import fold
    from nasdeploy.nas.net import Network
    from nasdeploy.nas.space import get_space
    from nasdeploy.nas.supernet import SPACE_FLAVOUR

    s = BUILTIN_SETTING
    rng = random.Random(args.seed)
    sp = get_space("scarlet")
    archs = [sp.sample(rng) for _ in range(args.archs)]
    shape = (1, 3, s.size, s.size)
    clock = Clock(repeats=args.repeats, rounds=args.rounds)
    groups = []
    for engine in parse_engines(args.engines):
        backend, dtype = engine.backend, engine.dtype
        why = unavailable_reason(backend, "cpu") or dtype_reason(backend, dtype, "cpu")
        if why:
            print(f"{backend}:{dtype} skipped: {why}")
            continue
        st = Settings("scarlet", "cpu", backend, 1, dtype, s.size, list(s.stride_plan), s.num_classes,
                      clock.warmup, clock.repeats, 1)
        runners = [runner_for(fold(Network(a, SPACE_FLAVOUR["scarlet"], s.num_classes, s.stride_plan).eval(),
                                   check=False)[0], shape, st) for a in archs]
        x = torch.randn(*shape)
        t0 = time.time()
        rounds = clock.time_all([r.timed(x) for r in runners], "cpu", seed=args.seed)
        meds = [[round(k.median, 6) for k in rs] for rs in rounds]
        summary = [RoundLatency.of(m) for m in meds]
        groups.append({"name": f"{backend}:{dtype}", "archs": [str(a) for a in archs], "round_medians": meds,
                       "seconds": round(time.time() - t0, 1),
                       "medians": [round(x.median, 6) for x in summary],
                       "warnings": [x.stability.warning for x in summary]})
        print(f"{backend}:{dtype}: " + ", ".join(x.describe() for x in summary), flush=True)
    env = environment("cpu")
    write_json(Path(args.json), {"what": "round medians of networks timed together, round by round",
                                 "setting": {"size": s.size, "batch": 1, "repeats": args.repeats,
                                             "rounds": args.rounds, "settle_s": clock.settle},
                                 "environment": env, "provenance": provenance(), "groups": groups})
    return 0


if __name__ == "__main__":
    sys.exit(main())
