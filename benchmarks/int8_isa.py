"""INT8 accuracy per instruction-set rule on this CPU: how far each quantized graph's logits move from float32.

The network of tests/test_quantize.py (a SCARLET subnet trained 80 steps on 4,000 built-in images, folded),
quantized from 64 train images by each rule, scored against float32 on 1,000 held-out images: typical (median)
per-image error relative to the largest logit, top-1 agreement with float32, and the top-1 drop.

    python -m benchmarks.int8_isa --json benchmarks/results/int8_isa_<cpu>.json
"""
from __future__ import annotations

import argparse
import json
import random

import torch

from nasdeploy.backends import make_runner
from nasdeploy.bench.env import environment
from nasdeploy.data import SMALL_INPUT_STRIDES, fashion_mnist
from nasdeploy.finetune import FinetuneConfig, train_model
from nasdeploy.fold import fold
from nasdeploy.io import provenance, write_json
from nasdeploy.isa import this_cpu
from nasdeploy.nas.net import Network
from nasdeploy.nas.space import get_space
from nasdeploy.quantize import Calibration, QuantOptions, calibration_images


def trained_net(seed: int) -> torch.nn.Module:
    arch = get_space("scarlet").sample(random.Random(11 + seed))
    torch.manual_seed(seed)
    net = Network(arch, "scarlet", 10, SMALL_INPUT_STRIDES)
    train_model(net, fashion_mnist("train", 4000), FinetuneConfig(steps=80, batch_size=32, lr=0.05, device="cpu",
                                                                  seed=seed), progress=False)
    return fold(net.eval())[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0", help="comma list: one trained network per seed (seed 0: the test's)")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    held = fashion_mnist("val", args.images)
    x, labels = held.tensors
    calib_x = torch.cat(calibration_images(28, True, None, QuantOptions(images=64)).batches)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        net = trained_net(seed)
        with torch.no_grad():
            ref = net(x)
        for backend in ("onnxruntime", "openvino"):
            for isa in ("vnni", "portable"):
                calib = Calibration([calib_x], QuantOptions(images=64, isa=isa), "64 train images")
                y = make_runner(backend, net, (len(x), 3, 28, 28), dtype="int8", calibration=calib)(x)
                typical = float(((y - ref).abs().amax(1) / ref.abs().amax(1)).median())
                agree = float((y.argmax(1) == ref.argmax(1)).float().mean())
                drop = 100 * float((ref.argmax(1) == labels).float().mean() - (y.argmax(1) == labels).float().mean())
                rows.append({"seed": seed, "backend": backend, "isa_rule": isa, "typical_error": round(typical, 4),
                             "agreement": round(agree, 4), "top1_drop_points": round(drop, 2)})
                print(json.dumps(rows[-1]))
    if args.json:
        write_json(args.json, {"cpu": this_cpu().as_dict(), "environment": environment("cpu"), "rows": rows,
                               "provenance": provenance()})


if __name__ == "__main__":
    main()
