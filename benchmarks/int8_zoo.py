"""Every zoo model in INT8 on ONNX Runtime and OpenVINO at its own input size: top-1 agreement with float32 and
logit error on real images.

Weights: the stand-in official-format checkpoints of ../shared/reference (seed 0, the official key layouts with
random values; the official ImageNet files cannot be fetched here). Random weights have none of the margins of
trained ones, so agreement here is a lower bound of what trained weights give; see benchmarks/int8_cpu.py for
trained FairNAS-A and SCARLET-A.

    python -m benchmarks.int8_zoo            # writes benchmarks/results/int8_zoo.json
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch

from nasdeploy.backends import Sources, Target, get_backend
from nasdeploy.bench.env import environment
from nasdeploy.data import real_batches
from nasdeploy.fold import fold
from nasdeploy.io import write_json
from nasdeploy.progress import progress_bar
from nasdeploy.quantize import QuantOptions, calibration_images
from nasdeploy.zoo import create_model, find_card, list_models

ROOT = Path(__file__).resolve().parents[1]


def refweights(shared: Path):
    spec = importlib.util.spec_from_file_location("refweights", shared / "reference" / "refweights.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--calib-images", type=int, default=64)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "int8_zoo.json"))
    args = ap.parse_args()
    rw = refweights(Path(args.shared))
    rows = []
    bar = progress_bar(True)
    task = bar.add_task("int8 zoo", total=len(list_models()))
    bar.start()
    try:
        for name in list_models():
            card = find_card(name)
            size, setting = card.input_size, card.setting()
            with tempfile.TemporaryDirectory() as tmp:
                ck = Path(tmp) / "w.pth.tar"
                torch.save(rw.make_checkpoint(name, 0), ck)
                plain, _ = fold(create_model(name, weights=ck), input_size=64)
                calib = calibration_images(setting, None, QuantOptions(images=args.calib_images))
                x = torch.cat(real_batches(None, "test", setting, args.images))
                with torch.no_grad():
                    ref = plain(x)
                src = Sources(plain, Path(tmp), (3, size, size), calib)
                target = Target((len(x), 3, size, size), (len(x), len(x)), "cpu", "int8")
                row = {"model": name, "input_size": size, "images": len(x)}
                for b in ("onnxruntime", "openvino"):
                    be = get_backend(b)
                    y = be.load(src, be.build(src, target), target)(x)
                    row[b] = {"top1_agreement": float((y.argmax(1) == ref.argmax(1)).float().mean() * 100),
                              "max_rel_error": float((y - ref).abs().max() / ref.abs().max()),
                              "median_rel_error": float(((y - ref).abs().amax(1) / ref.abs().amax(1)).median())}
                rows.append(row)
            bar.update(task, advance=1, description=name)
    finally:
        bar.stop()
    write_json(args.json, {"environment": environment("cpu"), "command": " ".join(sys.argv), "rows": rows})
    for r in rows:
        print(f"{r['model']:28s} ORT agree {r['onnxruntime']['top1_agreement']:6.2f}%  "
              f"OV agree {r['openvino']['top1_agreement']:6.2f}%  median rel. err "
              f"{r['onnxruntime']['median_rel_error']:.3f} / {r['openvino']['median_rel_error']:.3f}")


if __name__ == "__main__":
    main()
