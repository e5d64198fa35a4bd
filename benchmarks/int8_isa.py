"""INT8 accuracy per quantization rule and calibration method on this CPU: how far each engine moves from float32.

The networks are those of the test suite (``trained_net``: a SCARLET subnet trained 80 steps on 4,000 built-in
images with ONE thread, whatever the machine, then folded; seed 0 is the suite's ``trained`` fixture). Each is
quantized from 64 training images by every (runtime, instruction-set rule, calibration method) and scored against
float32 on 1,000 search-validation images (what a choice of settings may look at) and 1,000 test images (what is
reported): typical error (the median over images of the largest logit error relative to the largest logit), top-1
agreement with float32, and the top-1 drop in points.

    python -m benchmarks.int8_isa --seeds 0,1,2,3 --json benchmarks/results/int8_isa_<vnni|avx2>.json
"""
from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time
from typing import Iterator

import torch

RULES = ("vnni", "no-vnni")
METHODS = ("minmax", "entropy", "percentile")
BACKENDS = ("onnxruntime", "openvino")


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """PyTorch pinned to ``n`` threads inside the block: the float order of a training run follows the thread count
    (1 and 2 threads train measurably different networks from the same seed)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def trained_net(seed: int = 0, steps: int = 80) -> torch.nn.Module:
    """The test suite's trained network for ``seed`` (unfolded, eval mode), trained on one thread."""
    from nasdeploy.data import SMALL_INPUT_STRIDES, fashion_mnist
    from nasdeploy.finetune import FinetuneConfig, train_model
    from nasdeploy.nas.net import Network
    from nasdeploy.nas.space import get_space

    arch = get_space("scarlet").sample(random.Random(11 + seed))
    with torch_threads(1):
        torch.manual_seed(seed)
        net = Network(arch, "scarlet", 10, SMALL_INPUT_STRIDES)
        train_model(net, fashion_mnist("train", 4000), FinetuneConfig(steps=steps, batch_size=32, lr=0.05,
                                                                      device="cpu", seed=seed), progress=False)
    return net.eval()


def scores(y: torch.Tensor, ref: torch.Tensor, labels: torch.Tensor) -> dict:
    from nasdeploy.gate import top1_class

    typical = float(((y - ref).abs().amax(1) / ref.abs().amax(1).clamp_min(1e-30)).median())
    agree = 100.0 * float((top1_class(y) == top1_class(ref)).double().mean())
    drop = 100.0 * float((top1_class(ref) == labels).double().mean() - (top1_class(y) == labels).double().mean())
    return {"typical_error": round(typical, 4), "agreement": round(agree, 2), "top1_drop": round(drop, 2)}


def held(split: str, n: int):
    from nasdeploy.data import BUILTIN_SETTING, labelled_batches

    b, _ = labelled_batches(None, split, BUILTIN_SETTING, n, batch=250)
    return torch.cat([x for x, _ in b]), torch.cat([y for _, y in b])


def measure(seeds: list[int], images: int, backends=BACKENDS, rules=RULES, methods=METHODS) -> list[dict]:
    from nasdeploy.backends import RunnerSpec, make_runner
    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.fold import fold
    from nasdeploy.quantize import Calibration, QuantOptions, calibration_images

    splits = {s: held(s, images) for s in ("search_val", "test")}
    calib_x = calibration_images(BUILTIN_SETTING, None, QuantOptions(images=64)).batches
    rows = []
    for seed in seeds:
        net = fold(trained_net(seed))[0]
        with torch.no_grad():
            refs = {s: net(x) for s, (x, _) in splits.items()}
        base = {s: round(100.0 * float((refs[s].argmax(1) == y).double().mean()), 2) for s, (_, y) in splits.items()}
        for backend in backends:
            for rule in rules:
                for method in methods:
                    calib = Calibration(calib_x, QuantOptions(images=64, isa=rule, method=method), "64 train images")
                    t0 = time.perf_counter()
                    run = make_runner(RunnerSpec(backend, (images, 3, 28, 28), dtype="int8"), net, calibration=calib)
                    row = {"seed": seed, "backend": backend, "isa_rule": rule, "method": method,
                           "float32_top1": base}
                    for s, (x, y) in splits.items():
                        row[s] = scores(run(x), refs[s], y)
                    row["seconds"] = round(time.perf_counter() - t0, 1)
                    rows.append(row)
                    print(f"seed {seed} {backend:11s} {rule:7s} {method:10s} float32 {base['test']:5.1f}% | "
                          + " | ".join(f"{s}: drop {row[s]['top1_drop']:+5.1f} agree {row[s]['agreement']:5.1f} "
                                       f"err {row[s]['typical_error']:.3f}" for s in splits), flush=True)
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per (runtime, rule, method): mean drop on each split, worst agreement and typical error over networks."""
    out = []
    keys = sorted({(r["backend"], r["isa_rule"], r["method"]) for r in rows})
    for k in keys:
        rs = [r for r in rows if (r["backend"], r["isa_rule"], r["method"]) == k]
        out.append({"backend": k[0], "isa_rule": k[1], "method": k[2], "networks": len(rs),
                    **{f"{s}_mean_drop": round(statistics.mean(r[s]["top1_drop"] for r in rs), 2)
                       for s in ("search_val", "test")},
                    "worst_agreement": min(min(r[s]["agreement"] for s in ("search_val", "test")) for r in rs),
                    "worst_typical_error": max(max(r[s]["typical_error"] for s in ("search_val", "test"))
                                               for r in rs)})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3", help="comma list: one trained network per seed (0: the suite's)")
    ap.add_argument("--images", type=int, default=1000, help="images per split")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from nasdeploy.bench.env import environment
    from nasdeploy.isa import this_cpu

    rows = measure([int(s) for s in args.seeds.split(",")], args.images, tuple(args.backends.split(",")), RULES,
                   tuple(args.methods.split(",")))
    summ = summary(rows)
    print(f"\nCPU: {this_cpu().describe()}")
    for s in summ:
        print(f"{s['backend']:11s} {s['isa_rule']:7s} {s['method']:10s} mean drop search-val {s['search_val_mean_drop']:+5.2f}"
              f" test {s['test_mean_drop']:+5.2f}; worst agreement {s['worst_agreement']:5.1f}%, worst typical error "
              f"{s['worst_typical_error']:.3f}")
    if args.json:
        from nasdeploy.io import provenance, write_json

        write_json(args.json, {"command": "python -m benchmarks.int8_isa " + " ".join(argv or sys.argv[1:]),
                               "cpu": this_cpu().as_dict(), "environment": environment("cpu"), "rows": rows,
                               "summary": summ, "provenance": provenance()})


if __name__ == "__main__":
    main()
