"""`nasdeploy train-supernet`: FairNAS strict-fairness (or SPOS) supernet training."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from ..nas.train import TrainConfig, train_supernet


def register(sub: argparse._SubParsersAction) -> None:
    d = TrainConfig()
    p = sub.add_parser("train-supernet", help="train a weight-sharing supernet (strict fairness by default)",
                       description="Train a FairNAS/SCARLET supernet. Multi-GPU: run the same command under torchrun "
                                   "(torchrun --nproc-per-node 8 -m nasdeploy train-supernet ...); multi-node: the same "
                                   "on every node with --nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT and "
                                   "--out on a shared file system (README, 'Training across GPUs and nodes').")
    p.add_argument("--space", default=d.space, help="fairnas | scarlet (default %(default)s)")
    p.add_argument("--data", default=d.data, help="ImageNet-layout folder (train/, val/) or 'fashion-mnist' (built in)")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt (rolling), supernet.pt (final)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--sampler", default=d.sampler, choices=["fair", "uniform"],
                   help="fair: FairNAS strict fairness (m paths, one update); uniform: SPOS single path")
    p.add_argument("--path-batches", default=d.path_batches, choices=["shared", "separate"],
                   help="the m paths of a step share one batch (default, as FairNAS) or take m batches")
    p.add_argument("--micro-batches", type=int, default=d.micro_batches,
                   help="split each batch into this many interleaved chunks, gradients averaged (as that many "
                        "torchrun ranks would compute; less memory)")
    p.add_argument("--warm-start", type=int, default=d.warm_start,
                   help="steps on the largest path before every candidate inherits its weights (default: a third "
                        "of --steps; 0 turns it off)")
    p.add_argument("--grad-mode", default=d.grad_mode, choices=["visits", "sum"],
                   help="sum: FairNAS's sum over the m paths (default); visits: each parameter gets the mean "
                        "gradient of the paths that used it (measured: no better)")
    p.add_argument("--no-zero-init-residual", action="store_true",
                   help="start residual branches at their random init instead of zero (last BN weight)")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="gradient norm clip, 0 for none")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="steps between atomic checkpoints")
    p.add_argument("--stabilizer-bn", action="store_true", help="BN after each SCARLET stabilizer (off by default)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    p.add_argument("--input-size", type=int, default=d.input_size, help="for image folders (default %(default)s)")
    p.add_argument("--workers", type=int, default=d.workers, help="data-loading workers for image folders")
    p.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train, outputs={"out": "dir"})


def cmd_train(args: argparse.Namespace) -> int:
    cfg = TrainConfig(space=args.space, data=args.data, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, sampler=args.sampler,
                      path_batches=args.path_batches, ckpt_every=args.ckpt_every, seed=args.seed, device=args.device,
                      amp=not args.no_amp, stabilizer_bn=args.stabilizer_bn, input_size=args.input_size,
                      workers=args.workers, deterministic=args.deterministic, warm_start=args.warm_start,
                      grad_mode=args.grad_mode, zero_init_residual=not args.no_zero_init_residual,
                      grad_clip=args.grad_clip, micro_batches=args.micro_batches)
    from pathlib import Path

    from ..nas.train import CHECKPOINT

    if args.resume and not (Path(args.out) / CHECKPOINT).exists():
        Console().print(f"no checkpoint in {args.out} to resume from: training starts at step 0", soft_wrap=True)
    r = train_supernet(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    first, last = r.loss_summary()
    t = Table(title=f"supernet written to {r.path}", show_header=False)
    t.add_row("steps", str(len(r.history)))
    t.add_row("loss, first steps", f"{first:.4f}")
    t.add_row("loss, last steps", f"{last:.4f}")
    Console().print(t)
    return 0
