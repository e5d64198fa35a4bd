#!/usr/bin/env python3
"""Speed of a stabilized SCARLET subnet vs its folded form (ONNX Runtime, CPU, batch 1, 224x224).

Both graphs come from the same extracted subnet: "stabilized" is exported without folding
(stabilizer 1x1 convs present, BN left for ONNX Runtime to fuse), "folded" is what
`nasdeploy export` writes. Timed alternately in rounds, so background load hits both alike.
Writes benchmarks/results/fold_speed_cpu.json.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nasdeploy.bench.env import environment  # noqa: E402
from nasdeploy.bench.runners import OrtRunner  # noqa: E402
from nasdeploy.bench.timing import time_cpu  # noqa: E402
from nasdeploy.evaluate import recalibrate_bn  # noqa: E402
from nasdeploy.export.onnx import onnx_ops, to_onnx_bytes  # noqa: E402
from nasdeploy.fold import fold  # noqa: E402
from nasdeploy.io import provenance  # noqa: E402
from nasdeploy.supernet import Supernet  # noqa: E402
from nasdeploy.zoo import get_card  # noqa: E402

ARCHS = {name: str(get_card(name).arch) for name in ("scarlet_b", "scarlet_c")}  # 2 and 3 skips


def main(rounds: int = 7, repeats: int = 40) -> dict:
    torch.manual_seed(0)
    sn = Supernet("scarlet", 1000).eval()
    with torch.no_grad():  # non-trivial stabilizers
        for layer in sn.layers:
            skip = layer.candidates[-1]
            if getattr(skip, "stabilizer", None) is not None:
                c = skip.stabilizer.conv.in_channels
                skip.stabilizer.conv.weight.copy_((torch.eye(c) + 0.1 * torch.randn(c, c) / c ** 0.5).view(c, c, 1, 1))
    out = {"provenance": provenance(), "environment": environment("cpu"), "rounds": rounds, "repeats": repeats,
           "models": {}}
    x = torch.randn(1, 3, 224, 224)
    for name, arch in ARCHS.items():
        sub = sn.extract(arch)
        # BN statistics estimated on random data, so activations propagate and the fold check is meaningful
        recalibrate_bn(sub, sub, [(torch.randn(8, 3, 64, 64),) for _ in range(3)])
        sub.eval()
        plain, rep = fold(sub, input_size=64)
        graphs = {"stabilized": to_onnx_bytes(sub, (1, 3, 224, 224)), "folded": to_onnx_bytes(plain, (1, 3, 224, 224))}
        runners = {k: OrtRunner(g) for k, g in graphs.items()}
        meds: dict[str, list[float]] = {k: [] for k in graphs}
        for _ in range(rounds):
            for k, r in runners.items():
                meds[k].append(time_cpu(r.timed(x), warmup=5, repeats=repeats).median)
        res = {k: statistics.median(v) for k, v in meds.items()}
        out["models"][name] = {
            "arch": arch, "convs": {k: onnx_ops(g).count("Conv") for k, g in graphs.items()},
            "median_ms": res, "round_medians_ms": meds, "speedup_folded": res["stabilized"] / res["folded"],
            "fold_max_rel_error_fp32": rep.max_rel_error_fp32, "stabilizers_folded": rep.stabilizers_folded,
        }
        print(f"{name}: stabilized {res['stabilized']:.3f} ms, folded {res['folded']:.3f} ms, "
              f"{res['stabilized'] / res['folded']:.3f}x ({out['models'][name]['convs']})")
    dest = ROOT / "benchmarks" / "results" / "fold_speed_cpu.json"
    dest.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return out


if __name__ == "__main__":
    main()
