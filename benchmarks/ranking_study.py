"""Pre-registered ranking study: do supernet estimates rank architectures inside the cost band a search works in,
better than free proxies? Protocol and pass criteria: benchmarks/README.md, "Ranking study (pre-registered)".

Every stage is cached in --out (killed and rerun, it continues); the result JSON stores the configuration, the
commit and the command, and the whole study reruns from one command:

    python -m benchmarks.ranking_study --out runs/ranking_study --json benchmarks/results/ranking_study.json
"""
from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class StudyConfig:
    space: str = "scarlet"
    pool: int = 4000  # random architectures the band is drawn from (biased draws: every skip count represented)
    band_archs: int = 30
    band_width: float = 0.10  # +-10% of the band's centre in multiply-adds
    band_centre: float = 0.85  # the centre: this fraction of the median random architecture's MACs (the demo's target)
    wide_archs: int = 12
    seed: int = 0
    # the reference: each architecture trained alone from scratch, the fine-tune stage's recipe (train_model: SGD,
    # Nesterov, warm-up + cosine, label smoothing 0.1), scored on the test split
    ref_steps: int = 1250  # 5 epochs of the 16,000 training images at batch 64
    ref_batch: int = 64
    ref_lr: float = 0.05
    ref_seeds: int = 2  # every architecture twice: the reference's own reliability (seed-vs-seed tau)
    # estimators: supernets trained on the train split, subnets BN-recalibrated and scored on search-validation
    eval_images: int = 3000  # of the 4,000 search-validation images; BN is recalibrated on 8 x 64 of the rest
    calib_batches: int = 8
    demo_steps: int = 120  # the demo's supernet budget (steps of 32)
    larger: tuple[int, ...] = (240, 480)  # the pilot on a 2-core CPU: --larger 240
    supernet_seeds: tuple[int, ...] = (0, 1)
    bootstrap: int = 10_000
    workers: int = 2  # reference trainings in parallel, one thread each


def macs_table(space_name: str):
    """Multiply-adds of an architecture at the built-in setting, additive over layers (shapes do not depend on the
    other layers' choices): per-layer costs measured once on meta networks."""
    import torch
    from torch import nn

    from nasdeploy.data import BUILTIN_SETTING as S
    from nasdeploy.nas.net import Network, count_macs
    from nasdeploy.nas.space import Arch, get_space
    from nasdeploy.nas.supernet import SPACE_FLAVOUR

    sp = get_space(space_name).with_strides(S.stride_plan)
    flavour = SPACE_FLAVOUR[space_name]
    cols = max(len(sp.choices_at(i)) for i in range(sp.num_layers))
    per: dict[tuple[int, str], int] = {}
    base = None
    for j in range(cols):
        arch = Arch(tuple(sp.choices_at(i)[min(j, len(sp.choices_at(i)) - 1)] for i in range(sp.num_layers)))
        net = Network(arch, flavour, S.num_classes, S.stride_plan).to("meta").eval()
        counts = [0] * sp.num_layers
        total = [0]

        def hook(idx):
            def f(mod, inp, out):
                kh, kw = mod.kernel_size if isinstance(mod, nn.Conv2d) else (1, 1)
                fan = (mod.in_channels // mod.groups) * kh * kw if isinstance(mod, nn.Conv2d) else mod.in_features
                n = out.numel() * fan
                total[0] += n
                if idx is not None:
                    counts[idx] += n
            return f

        for name, m in net.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                parts = name.split(".")
                idx = int(parts[1]) if parts[0] == "mb_module" else None
                m.register_forward_hook(hook(idx))
        with torch.no_grad():
            net(torch.empty(1, 3, S.size, S.size, device="meta"))
        base = total[0] - sum(counts)
        for i, c in enumerate(arch):
            per[(i, c.token)] = counts[i]
        assert count_macs(Network(arch, flavour, S.num_classes, S.stride_plan), S.size) == total[0]
    return lambda a: base + sum(per[(i, c.token)] for i, c in enumerate(a))


def choose_archs(cfg: StudyConfig, macs) -> tuple[list[str], list[str], dict]:
    """30 architectures within +-10% of the band centre, spread over skip counts; and the 12 across the whole
    range of the earlier study (benchmarks/results/ranking_scarlet_12archs.json)."""
    from nasdeploy.nas.space import SKIP, Arch, get_space

    sp = get_space(cfg.space)
    rng = random.Random(cfg.seed)
    skippable = [i for i in range(sp.num_layers) if SKIP in sp.choices_at(i)]
    pool: dict[str, Arch] = {}
    while len(pool) < cfg.pool:
        k = rng.randint(0, len(skippable))
        skips = set(rng.sample(skippable, k))
        a = Arch(tuple(SKIP if i in skips else rng.choice([c for c in sp.choices_at(i) if not c.skip])
                       for i in range(sp.num_layers)))
        pool[str(a)] = a
    uniform = [sp.sample(rng) for _ in range(1000)]
    centre = cfg.band_centre * float(np.median([macs(a) for a in uniform]))
    lo, hi = (1 - cfg.band_width) * centre, (1 + cfg.band_width) * centre
    inband = [a for a in pool.values() if lo <= macs(a) <= hi]
    by_skips: dict[int, list] = {}
    for a in inband:
        by_skips.setdefault(sum(c.skip for c in a), []).append(a)
    picked: list[str] = []
    order = sorted(by_skips)
    while len(picked) < cfg.band_archs and any(by_skips.values()):
        for k in order:  # round robin over skip counts
            if by_skips[k] and len(picked) < cfg.band_archs:
                picked.append(str(by_skips[k].pop(rng.randrange(len(by_skips[k])))))
    wide = json.loads((ROOT / "benchmarks/results/ranking_scarlet_12archs.json").read_text())["archs"]
    return picked, wide[: cfg.wide_archs], {"centre_macs": centre, "band_macs": [lo, hi], "in_band_pool": len(inband),
                                            "skip_counts": sorted(sum(1 for t in a.split("-") if t == "skip")
                                                                  for a in picked)}


# ------------------------------------------------------------------ the reference: trained alone

def _train_alone(job: tuple) -> tuple[str, int, dict]:
    arch, seed, cfg_d, state = job
    import torch

    torch.set_num_threads(1)
    from nasdeploy.data import BUILTIN_SETTING as S, dataset
    from nasdeploy.finetune import FinetuneConfig, train_model
    from nasdeploy.nas.net import Network
    from nasdeploy.nas.recipe import zero_init_residuals
    from nasdeploy.nas.supernet import SPACE_FLAVOUR
    from nasdeploy.search.estimate import estimate
    from torch.utils.data import DataLoader

    cfg = StudyConfig(**cfg_d)
    torch.manual_seed(seed)
    net = Network(arch, SPACE_FLAVOUR[cfg.space], S.num_classes, S.stride_plan)
    zero_init_residuals(net)  # nasdeploy's initialisation, as the supernet's
    ft = FinetuneConfig(steps=cfg.ref_steps, batch_size=cfg.ref_batch, lr=cfg.ref_lr, seed=seed, device="cpu",
                        ckpt_every=max(1, cfg.ref_steps // 10))
    t0 = time.time()
    train_model(net, dataset("fashion-mnist", "train", S), ft, Path(state), progress=False)
    e = estimate(net, DataLoader(dataset("fashion-mnist", "test", S), batch_size=500))
    return arch, seed, {"top1": e.top1, "loss": e.loss, "seconds": round(time.time() - t0, 1)}


def references(cfg: StudyConfig, archs: list[str], out: Path) -> dict[str, dict[int, dict]]:
    path = out / "reference.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    import hashlib

    jobs = [(a, s, asdict(cfg), str(out / "alone" / f"{hashlib.sha1(a.encode()).hexdigest()[:12]}_{s}.pt"))
            for s in range(cfg.ref_seeds) for a in archs if str(s) not in done.get(a, {})]
    (out / "alone").mkdir(parents=True, exist_ok=True)
    from nasdeploy.io import write_json

    with ProcessPoolExecutor(cfg.workers) as pool:
        for arch, seed, r in pool.map(_train_alone, jobs):
            done.setdefault(arch, {})[str(seed)] = r
            write_json(path, done)
            print(f"alone seed {seed}: {r['top1']:.2f}% ({r['seconds']} s) {arch}", flush=True)
    return done


# ------------------------------------------------------------------ estimators

def supernet_runs(cfg: StudyConfig) -> dict[str, dict]:
    """name -> TrainConfig fields (beyond space and data)."""
    fair = dict(sampler="fair", batch_size=32, lr=0.1)
    runs = {f"fair_{cfg.demo_steps}_s{s}": dict(fair, steps=cfg.demo_steps, seed=s) for s in cfg.supernet_seeds}
    runs |= {f"fair_{n}_s0": dict(fair, steps=n, seed=0) for n in cfg.larger}
    # the warm start alone: its end checkpoint (the largest path), then every candidate inherits it, no fair phase
    runs["warm_only_s0"] = dict(fair, steps=cfg.demo_steps // 3, warm_start=cfg.demo_steps // 3, seed=0)
    # true SPOS (no warm start, no inheritance, no zero-init): uniform single paths, as many path-images as the
    # fair run (13 paths a step)
    runs["spos_s0"] = dict(sampler="uniform", batch_size=32, lr=0.1, steps=cfg.demo_steps * 13, seed=0,
                           warm_start=0, zero_init_residual=False)
    return runs


def supernet_estimates(cfg: StudyConfig, archs: list[str], out: Path) -> dict[str, dict[str, dict]]:
    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.evaluate import recalibrated_subnet
    from nasdeploy.io import write_json
    from nasdeploy.nas.checkpoint import load_checkpoint, supernet_from
    from nasdeploy.nas.space import Arch
    from nasdeploy.nas.train import TrainConfig, train_supernet
    from nasdeploy.search import load_eval_data
    from nasdeploy.search.estimate import estimate

    calib, val = load_eval_data("fashion-mnist", cfg.calib_batches, 64, cfg.eval_images, BUILTIN_SETTING)
    res: dict[str, dict[str, dict]] = {}
    for name, kw in supernet_runs(cfg).items():
        d = out / "supernets" / name
        path = d / "estimates.json"
        if path.exists():
            res[name] = json.loads(path.read_text())
            continue
        tc = TrainConfig(space=cfg.space, data="fashion-mnist", device="cpu", ckpt_every=20, **kw)
        t0 = time.time()
        if not (d / "supernet.pt").exists():
            train_supernet(tc, d, resume=(d / "checkpoint.pt").exists(), progress=False)
        ck = load_checkpoint(d / "supernet.pt")
        sn = supernet_from(ck, d / "supernet.pt")
        est = {}
        for a in archs:
            e = estimate(recalibrated_subnet(sn, Arch.parse(a), calib), val)
            est[a] = {"top1": e.top1, "loss": e.loss}
        res[name] = {"estimates": est, "config": asdict(tc), "loss_last": ck["history"][-1][1],
                     "seconds": round(time.time() - t0, 1)}
        write_json(path, res[name])
        print(f"{name}: trained and scored in {res[name]['seconds']} s", flush=True)
    return res


def zero_cost(cfg: StudyConfig, archs: list[str], out: Path) -> dict[str, dict[str, float]]:
    """NASWOT (Mellor et al., ICML 2021) and synflow (Tanaka et al. 2020; Abdelfattah et al., ICLR 2021), at
    initialisation on one batch of training images."""
    import torch
    from torch import nn

    from nasdeploy.data import BUILTIN_SETTING as S, dataset
    from nasdeploy.nas.net import Network
    from nasdeploy.nas.space import Arch
    from nasdeploy.nas.supernet import SPACE_FLAVOUR

    path = out / "zero_cost.json"
    if path.exists():
        return json.loads(path.read_text())
    x = torch.stack([dataset("fashion-mnist", "train", S)[i][0] for i in range(64)])
    res = {}
    for a in archs:
        torch.manual_seed(cfg.seed)
        net = Network(Arch.parse(a), SPACE_FLAVOUR[cfg.space], S.num_classes, S.stride_plan)
        codes = []

        def hook(mod, inp, outp):
            codes.append((inp[0].detach() > 0).flatten(1).float())

        hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.ReLU, nn.ReLU6, nn.Hardswish))]
        net.train()
        with torch.no_grad():
            net(x)
        for h in hs:
            h.remove()
        c = torch.cat(codes, 1)
        k = c @ c.t() + (1 - c) @ (1 - c).t()
        naswot = float(torch.linalg.slogdet(k.double())[1])
        net = net.double().eval()
        with torch.no_grad():
            for p in net.parameters():
                p.abs_()
        net.zero_grad()
        net(torch.ones(1, 3, S.size, S.size, dtype=torch.float64)).sum().backward()
        synflow = float(sum((p.grad * p).abs().sum() for p in net.parameters() if p.grad is not None))
        res[a] = {"naswot": naswot, "synflow": math.log(synflow + 1e-30)}
    from nasdeploy.io import write_json

    write_json(path, res)
    return res


# ------------------------------------------------------------------ statistics

def kendall_b(x, y) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(x, y).statistic)


def spearman(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def rank_stats(ref: np.ndarray, scores: dict[str, np.ndarray], best_proxy: str | None, rng: np.random.Generator,
               n_boot: int) -> dict:
    """tau-b and Spearman with bootstrap intervals over architectures; each estimator's tau minus the best free
    proxy's, paired on the same resamples; the regret of each estimator's top pick."""
    n = len(ref)
    idx = rng.integers(0, n, size=(n_boot, n))
    out = {}
    boots = {}
    for name, s in scores.items():
        taus = np.array([kendall_b(ref[i], s[i]) for i in idx])
        boots[name] = taus
        pick = int(np.argmax(s))
        out[name] = {"tau": kendall_b(ref, s), "tau_ci95": [float(np.nanpercentile(taus, 2.5)),
                                                            float(np.nanpercentile(taus, 97.5))],
                     "spearman": spearman(ref, s), "regret": float(ref.max() - ref[pick])}
    if best_proxy:
        for name in scores:
            d = boots[name] - boots[best_proxy]
            out[name]["minus_best_proxy"] = float(out[name]["tau"] - out[best_proxy]["tau"])
            out[name]["minus_best_proxy_ci95"] = [float(np.nanpercentile(d, 2.5)), float(np.nanpercentile(d, 97.5))]
    return out


def analyse(cfg: StudyConfig, band: list[str], wide: list[str], ref: dict, sn: dict, zc: dict, macs, lat) -> dict:
    from nasdeploy.data import BUILTIN_SETTING as S
    from nasdeploy.nas.net import Network, count_params
    from nasdeploy.nas.space import Arch
    from nasdeploy.nas.supernet import SPACE_FLAVOUR

    rng = np.random.default_rng(cfg.seed)
    out = {}
    for view, archs in (("band", band), ("wide", wide)):
        seeds = [np.array([ref[a][str(s)]["top1"] for a in archs]) for s in range(cfg.ref_seeds)]
        reference = np.mean(seeds, axis=0)
        a_objs = [Arch.parse(a) for a in archs]
        free = {"macs": np.array([macs(a) for a in a_objs], float),
                "params": np.array([count_params(Network(a, SPACE_FLAVOUR[cfg.space], S.num_classes, S.stride_plan))
                                    for a in a_objs], float),
                "neg_skips": -np.array([sum(c.skip for c in a) for a in a_objs], float)}
        if lat is not None:
            free["latency"] = np.array([lat(a) for a in a_objs])
        zero = {k: np.array([zc[a][k] for a in archs]) for k in ("naswot", "synflow")}
        est = {}
        for name, r in sn.items():
            est[f"{name}_top1"] = np.array([r["estimates"][a]["top1"] for a in archs])
            est[f"{name}_loss"] = -np.array([r["estimates"][a]["loss"] for a in archs])
        proxy_taus = {k: kendall_b(reference, v) for k, v in free.items()}
        best_proxy = max(proxy_taus, key=proxy_taus.get)
        stats = rank_stats(reference, {**free, **zero, **est}, best_proxy, rng, cfg.bootstrap)
        ctl = [k for k in est if k.startswith("warm_only")]  # each estimator minus the warm-start-only control
        if ctl:
            idx = rng.integers(0, len(archs), size=(cfg.bootstrap, len(archs)))
            for k in est:
                for c in ctl:
                    if c.rsplit("_", 1)[1] != k.rsplit("_", 1)[1]:
                        continue
                    d = np.array([kendall_b(reference[i], est[k][i]) - kendall_b(reference[i], est[c][i]) for i in idx])
                    stats[k]["minus_warm_only"] = float(stats[k]["tau"] - stats[c]["tau"])
                    stats[k]["minus_warm_only_ci95"] = [float(np.nanpercentile(d, 2.5)),
                                                        float(np.nanpercentile(d, 97.5))]
        seed_tau = kendall_b(seeds[0], seeds[1]) if cfg.ref_seeds > 1 else None
        out[view] = {"archs": archs, "reference_top1": reference.tolist(), "seed_tops": [s.tolist() for s in seeds],
                     "reference_spread_points": float(reference.max() - reference.min()),
                     "seed_vs_seed_tau": seed_tau,
                     "seed_abs_diff_mean": float(np.mean(np.abs(seeds[0] - seeds[1]))) if cfg.ref_seeds > 1 else None,
                     "best_free_proxy": best_proxy, "estimators": stats}
    return out


def latency_predictor(out: Path):
    """Predicted latency from a table of this machine (ONNX Runtime fp32, batch 1, the built-in setting)."""
    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.latency import LatencyTable, Settings, measure_table

    p = out / "lut_onnxruntime_fp32.json"
    measure_table(Settings.for_input("scarlet", "cpu", "onnxruntime", 1, "fp32", BUILTIN_SETTING, warmup=3,
                                     repeats=20), p, progress=False)
    t = LatencyTable.load(p)
    return t.predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/ranking_study")
    ap.add_argument("--json", default=None)
    ap.add_argument("--ref-steps", type=int, default=StudyConfig.ref_steps)
    ap.add_argument("--band-archs", type=int, default=StudyConfig.band_archs)
    ap.add_argument("--workers", type=int, default=StudyConfig.workers)
    ap.add_argument("--larger", default="240,480", help="larger supernet budgets (steps of 32)")
    ap.add_argument("--stage", choices=("archs", "reference", "supernets", "all"), default="all")
    args = ap.parse_args()
    cfg = StudyConfig(ref_steps=args.ref_steps, band_archs=args.band_archs, workers=args.workers,
                      larger=tuple(int(v) for v in args.larger.split(",") if v))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    macs = macs_table(cfg.space)
    band, wide, band_info = choose_archs(cfg, macs)
    print(f"band: {len(band)} architectures, MACs {band_info['band_macs'][0] / 1e6:.2f}-"
          f"{band_info['band_macs'][1] / 1e6:.2f}M, skips {band_info['skip_counts']}", flush=True)
    if args.stage == "archs":
        return
    ref = references(cfg, band + [a for a in wide if a not in band], out)
    if args.stage == "reference":
        return
    archs = band + [a for a in wide if a not in band]
    sn = supernet_estimates(cfg, archs, out)
    if args.stage == "supernets":
        return
    zc = zero_cost(cfg, archs, out)
    lat = latency_predictor(out)
    from nasdeploy.io import provenance, write_json
    from nasdeploy.isa import this_cpu

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    res = {"config": asdict(cfg), "command": " ".join(sys.argv), "commit": commit, "band": band_info,
           "cpu": this_cpu().as_dict(), "hours": round((time.time() - t0) / 3600, 2),
           "supernets": {k: {kk: v[kk] for kk in ("config", "loss_last", "seconds")} for k, v in sn.items()},
           "views": analyse(cfg, band, wide, ref, sn, zc, macs, lat), "provenance": provenance()}
    write_json(out / "ranking_study.json", res)
    if args.json:
        write_json(args.json, res)
    for view, r in res["views"].items():
        print(f"\n{view}: reference spread {r['reference_spread_points']:.2f} points, seed-vs-seed tau "
              f"{r['seed_vs_seed_tau']}, best free proxy {r['best_free_proxy']}")
        for k, s in sorted(r["estimators"].items(), key=lambda kv: -kv[1]["tau"]):
            extra = f" minus best proxy {s.get('minus_best_proxy', 0):+.2f} {s.get('minus_best_proxy_ci95')}"
            print(f"  {k:28s} tau {s['tau']:+.3f} [{s['tau_ci95'][0]:+.2f}, {s['tau_ci95'][1]:+.2f}] regret "
                  f"{s['regret']:.2f}{extra}")


if __name__ == "__main__":
    main()
