#!/usr/bin/env python3
"""Speed of a stabilized SCARLET subnet vs its folded form, 224x224.

CPU (default): ONNX Runtime, batch 1. Both graphs come from the same extracted subnet: "stabilized" is
exported without folding (stabilizer 1x1 convs present, BN left for ONNX Runtime to fuse), "folded" is
what `nasdeploy export` writes. Writes benchmarks/results/fold_speed_cpu.json.

CUDA (``--device cuda --batch 256 --dtype fp16``): PyTorch with CUDA graphs, GPU time from CUDA events.
"stabilized" has its BN folded (so that, as on the CPU, only the stabilizers differ), "folded" is the
plain network. Writes benchmarks/results/fold_speed_cuda.json (or ``--out``).

Timed alternately in rounds, so background load hits both alike; the median of the round medians counts.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from nasdeploy.backends.onnxruntime import OrtRunner
from nasdeploy.bench.env import environment
from nasdeploy.bench.timing import time_fn
from nasdeploy.evaluate import recalibrate_bn
from nasdeploy.fold import fold
from nasdeploy.io import provenance
from nasdeploy.nas.supernet import Supernet
from nasdeploy.onnxgraph import onnx_ops, to_onnx_bytes
from nasdeploy.zoo import get_card

ROOT = Path(__file__).resolve().parents[1]

ARCHS = {name: str(get_card(name).arch) for name in ("scarlet_b", "scarlet_c")}  # 2 and 3 skips


def _runners(sub, plain, device: str, batch: int, dtype: str) -> tuple[dict, dict]:
    """(name -> timed call, name -> number of Conv ops) for the stabilized and the folded network."""
    import copy

    if device == "cpu":
        shape = (batch, 3, 224, 224)
        graphs = {"stabilized": to_onnx_bytes(sub, shape), "folded": to_onnx_bytes(plain, shape)}
        x = torch.randn(*shape)
        return ({k: OrtRunner(g).timed(x) for k, g in graphs.items()},
                {k: onnx_ops(g).count("Conv") for k, g in graphs.items()})
    from nasdeploy.backends import parse_dtype
    from nasdeploy.backends.torch_eager import TorchRunner
    from nasdeploy.fold import fold_bn

    stab = copy.deepcopy(sub)
    fold_bn(stab)
    nets = {"stabilized": stab, "folded": plain}
    x = torch.randn(batch, 3, 224, 224)
    return ({k: TorchRunner(n, device, parse_dtype(dtype)).timed(x) for k, n in nets.items()},
            {k: sum(isinstance(m, torch.nn.Conv2d) for m in n.modules()) for k, n in nets.items()})


def main(rounds: int = 7, repeats: int = 40, device: str = "cpu", batch: int = 1, dtype: str = "fp32",
         dest: Path | None = None) -> dict:
    torch.manual_seed(0)
    sn = Supernet("scarlet", 1000).eval()
    with torch.no_grad():  # non-trivial stabilizers
        for layer in sn.layers:
            skip = layer.candidates[-1]
            if getattr(skip, "stabilizer", None) is not None:
                c = skip.stabilizer.conv.in_channels
                skip.stabilizer.conv.weight.copy_((torch.eye(c) + 0.1 * torch.randn(c, c) / c ** 0.5).view(c, c, 1, 1))
    out = {"provenance": provenance(), "environment": environment(device), "rounds": rounds, "repeats": repeats,
           "batch": batch, "dtype": dtype, "runtime": "onnxruntime" if device == "cpu" else "torch + CUDA graphs",
           "models": {}}
    for name, arch in ARCHS.items():
        sub = sn.extract(arch)
        # BN statistics estimated on random data, so activations propagate and the fold check is meaningful
        recalibrate_bn(sub, sub, [(torch.randn(8, 3, 64, 64),) for _ in range(3)])
        sub.eval()
        plain, rep = fold(sub, input_size=64)
        timers, convs = _runners(sub, plain, device, batch, dtype)
        meds: dict[str, list[float]] = {k: [] for k in timers}
        for _ in range(rounds):
            for k, fn in timers.items():
                meds[k].append(time_fn(fn, device, 5, repeats).median)
        res = {k: statistics.median(v) for k, v in meds.items()}
        out["models"][name] = {
            "arch": arch, "convs": convs,
            "median_ms": res, "round_medians_ms": meds, "speedup_folded": res["stabilized"] / res["folded"],
            "fold_max_rel_error_fp32": rep.max_rel_error_fp32, "stabilizers_folded": rep.stabilizers_folded,
        }
        print(f"{name}: stabilized {res['stabilized']:.3f} ms, folded {res['folded']:.3f} ms, "
              f"{res['stabilized'] / res['folded']:.3f}x ({out['models'][name]['convs']})")
    dest = dest or ROOT / "benchmarks" / "results" / f"fold_speed_{'cpu' if device == 'cpu' else 'cuda'}.json"
    dest.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="stabilized vs folded SCARLET subnet speed")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=None, help="default 1 on the CPU, 256 on CUDA")
    ap.add_argument("--dtype", default=None, help="default fp32 on the CPU, fp16 on CUDA")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    cuda = a.device.startswith("cuda")
    main(a.rounds, a.repeats, a.device, a.batch or (256 if cuda else 1), a.dtype or ("fp16" if cuda else "fp32"), a.out)
