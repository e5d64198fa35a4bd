"""INT8 and bf16 on the CPU against plain ONNX Runtime fp32, with the accuracy gate, for FairNAS-A and SCARLET-A.

The official ImageNet checkpoints are not available here, and stand-in random weights say nothing about accuracy
(their logits are so close that even bf16 changes a third of the top-1 predictions). So the script first trains the
exact FairNAS-A and SCARLET-A networks (224 px, 1000-way classifier) briefly on the built-in Fashion-MNIST images,
shown at 224 px with the official preprocessing, and caches them; then it runs one `nasdeploy bench` with every CPU
engine and the accuracy gate on 1,000 held-out images, and writes the JSON the README table quotes.

    python -m benchmarks.int8_cpu --out runs/int8          # trains (cached), then benches
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Upscaled:
    """Built-in train images at 224 px with the official eval preprocessing (what the gate's images get)."""

    def __init__(self, limit: int) -> None:
        from nasdeploy.data import fashion_mnist_images, official_eval_transform

        self.images, self.labels = fashion_mnist_images("train", limit)
        self.tf = official_eval_transform(224)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.tf(Image.fromarray(self.images[i]).convert("RGB")), int(self.labels[i])


def train(name: str, out: Path, steps: int, batch: int) -> Path:
    import torch

    from nasdeploy.finetune import FinetuneConfig, train_model
    from nasdeploy.zoo import create_model, save_checkpoint

    path = out / f"{name}.pt"
    if path.exists():
        return path
    torch.manual_seed(0)
    model = create_model(name)
    train_model(model, Upscaled(steps * batch), FinetuneConfig(steps, batch, lr=0.05, ckpt_every=25, device="cpu"),
                out / f"{name}.state.pt", label=f"train {name} at 224 px")
    save_checkpoint(model.eval(), path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/int8")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default="fairnas_a,scarlet_a", help="comma-separated zoo names")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "bench_int8_cpu.json"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpts = [str(train(n, out, args.steps, args.batch)) for n in args.models.split(",")]
    cmd = [sys.executable, str(ROOT / "cli.py"), "bench", *ckpts, "--device", "cpu",
           "--backends", "torch,onnxruntime,openvino", "--dtype", "fp32,int8,bf16", "--batch", "1",
           "--rounds", str(args.rounds), "--accuracy", "--gate-images", "1000", "--json", args.json, "--no-progress"]
    print(" ".join(cmd[1:]))
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
