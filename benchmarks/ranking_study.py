"""Pre-registered ranking study: do supernet estimates rank architectures inside the cost band a search works in,
better than free proxies? Protocol and pass criteria: benchmarks/README.md, "Ranking study (pre-registered)".

Every proxy carries its sign (``Proxy.sign``: +1 ranks the larger value first, -1 the smaller) and Kendall's tau is
reported for each with its sign applied: MACs and fewest MACs, parameters and fewest parameters, most and fewest
skips, predicted latency and lowest predicted latency (without a latency table, MACs stand in, and the names say
so), NASWOT and synflow at initialisation on one batch.

Every stage is cached in --out (killed and rerun, it continues; another configuration is refused there); the result
JSON stores the configuration, the commit and the command, and the whole study reruns from one command:

    python -m benchmarks.ranking_study --out runs/ranking_study --json benchmarks/results/ranking_study.json

Every field of StudyConfig is an option (--ref-steps, --band-archs, --larger 240, ...). ``--tiny`` is a smoke run,
not a result: every stage at the smallest settings, under a minute on one core (tests/test_ranking_study.py):

    python -m benchmarks.ranking_study --tiny --out runs/ranking_tiny
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WIDE = ROOT / "benchmarks/results/ranking_scarlet_12archs.json"


@dataclass
class StudyConfig:
    space: str = "scarlet"
    pool: int = 4000  # random architectures the band is drawn from (biased draws: every skip count represented)
    band_archs: int = 30
    band_width: float = 0.10  # +-10% of the band's centre in multiply-adds
    band_centre: float = 0.85  # the centre: this fraction of the median random architecture's MACs (the demo's target)
    wide_archs: int = 12  # of the 12 of the earlier study, evenly spaced in their order of MACs
    seed: int = 0
    # the reference: each architecture trained alone from scratch, the fine-tune stage's recipe (train_model: SGD,
    # Nesterov, warm-up + cosine, label smoothing 0.1), scored on the test split
    ref_steps: int = 1250  # 5 epochs of the 16,000 training images at batch 64
    ref_batch: int = 64
    ref_lr: float = 0.05
    ref_seeds: int = 2  # every architecture twice: the reference's own reliability (seed-vs-seed tau)
    test_images: int = 4000  # the reference scores the first N images of the test split (all of its 4,000)
    # estimators: supernets trained on the train split, subnets BN-recalibrated and scored on search-validation
    eval_images: int = 3000  # of the 4,000 search-validation images; BN is recalibrated on 8 x 64 of the rest
    calib_batches: int = 8
    calib_batch: int = 64  # images per BN-recalibration batch
    demo_steps: int = 120  # the demo's supernet budget (steps of 32)
    larger: tuple[int, ...] = (240, 480)  # the pilot on a 2-core CPU: --larger 240
    supernet_seeds: tuple[int, ...] = (0, 1)
    supernet_batch: int = 32  # images per path and step (the demo's)
    zero_cost_images: int = 64  # NASWOT's one batch of training images
    bootstrap: int = 10_000
    workers: int = 2  # reference trainings in parallel, one thread each (1: in this process)
    # predicted latency: "measure" (this machine's ONNX Runtime fp32 table at the built-in setting, cached in --out),
    # the path of such a table, or "none" (MACs stand in for it, and the proxies' names say so)
    lut: str = "measure"


# a smoke run, not a result: every stage runs, on 6 architectures (4 band, 2 wide), a few steps and a few images
TINY = dict(pool=300, band_archs=4, wide_archs=2, ref_steps=2, ref_batch=16, ref_seeds=2, test_images=100,
            eval_images=32, calib_batches=1, calib_batch=16, demo_steps=1, larger=(), supernet_seeds=(0,),
            supernet_batch=8, zero_cost_images=16, bootstrap=50, workers=1, lut="none")
# fields a rerun on the same --out may change: they touch no cached stage
RERUN_FREE = ("bootstrap", "workers", "lut")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/ranking_study", help="the study's folder: every stage is cached there")
    ap.add_argument("--json", default=None, help="also write the result here")
    ap.add_argument("--stage", choices=("archs", "reference", "supernets", "all"), default="all",
                    help="stop after this stage")
    ap.add_argument("--tiny", action="store_true",
                    help="a smoke run, not a result: " + ", ".join(f"{k} {v}" for k, v in TINY.items())
                    + " (options given beside it win)")
    for f in fields(StudyConfig):
        default = f.default
        kind = _ints if isinstance(default, tuple) else type(default)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        extra = {"choices": ("scarlet",)} if f.name == "space" else {}  # the wide view's architectures are SCARLET's
        ap.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None, help=f"default {shown}"
                        + (" (comma-separated, empty for none)" if isinstance(default, tuple) else ""), **extra)
    return ap


def config_from(args: argparse.Namespace) -> StudyConfig:
    given = {f.name: getattr(args, f.name) for f in fields(StudyConfig) if getattr(args, f.name) is not None}
    cfg = StudyConfig(**((TINY if args.tiny else {}) | given))
    positive = ("pool", "band_archs", "wide_archs", "ref_steps", "ref_batch", "ref_seeds", "test_images",
                "eval_images", "calib_batches", "calib_batch", "demo_steps", "supernet_batch", "zero_cost_images",
                "bootstrap", "workers")
    bad = [f"--{k.replace('_', '-')} {getattr(cfg, k)}" for k in positive if getattr(cfg, k) < 1]
    if any(n < 1 for n in cfg.larger):
        bad.append(f"--larger {cfg.larger}")
    if not cfg.supernet_seeds:
        bad.append("--supernet-seeds (empty)")
    if bad:
        raise SystemExit(f"ranking_study: out of range: {', '.join(bad)}")
    return cfg


def check_out(cfg: StudyConfig, out: Path) -> None:
    """The caches in ``out`` belong to one configuration: the first run records it, a rerun must match it (bar the
    fields in RERUN_FREE), so that a killed run continues and never mixes two studies."""
    from nasdeploy.io import write_json

    path = out / "study_config.json"
    mine = {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k not in RERUN_FREE}
    if not path.exists():
        write_json(path, mine)
        return
    there = json.loads(path.read_text())
    diff = [f"{k} {there.get(k)} there, {mine.get(k)} now" for k in sorted(set(mine) | set(there))
            if mine.get(k) != there.get(k)]
    if diff:
        raise SystemExit(f"ranking_study: {out} holds a study of another configuration ({'; '.join(diff)}): rerun "
                         "with its options or choose another --out")


def macs_table(space_name: str):
    """Multiply-adds of an architecture at the built-in setting, additive over layers (shapes do not depend on the
    other layers' choices): per-layer costs counted once, on networks built without initialising their weights
    (uninitialised memory: only shapes matter). Takes an Arch. choose_archs checks it against nasdeploy's count_macs
    as recorded for the 12 wide architectures."""
    import torch
    from torch import nn

    from nasdeploy.data import BUILTIN_SETTING as S
    from nasdeploy.nas.net import Network
    from nasdeploy.nas.space import Arch, get_space
    from nasdeploy.nas.supernet import SPACE_FLAVOUR

    sp = get_space(space_name).with_strides(S.stride_plan)
    flavour = SPACE_FLAVOUR[space_name]
    cols = max(len(sp.choices_at(i)) for i in range(sp.num_layers))
    per: dict[tuple[int, str], int] = {}
    base = None
    for j in range(cols):
        arch = Arch(tuple(sp.choices_at(i)[min(j, len(sp.choices_at(i)) - 1)] for i in range(sp.num_layers)))
        with torch.device("meta"):  # no initialisation: 13 forwards at batch 1 take a fraction of a second
            net = Network(arch, flavour, S.num_classes, S.stride_plan)
        net = net.to_empty(device="cpu").eval()
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

        hooks = []
        for name, m in net.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                parts = name.split(".")
                idx = int(parts[1]) if parts[0] == "mb_module" else None
                hooks.append(m.register_forward_hook(hook(idx)))
        with torch.no_grad():
            net(torch.zeros(1, 3, S.size, S.size))
        for h in hooks:
            h.remove()
        base = total[0] - sum(counts)
        for i, c in enumerate(arch):
            per[(i, c.token)] = counts[i]
    return lambda a: base + sum(per[(i, c.token)] for i, c in enumerate(a))


def choose_archs(cfg: StudyConfig, macs) -> tuple[list[str], list[str], dict]:
    """``band_archs`` architectures within +-10% of the band centre, spread over skip counts; and ``wide_archs`` of
    the 12 across the whole range of the earlier study (benchmarks/results/ranking_scarlet_12archs.json), evenly
    spaced in their order of MACs (all 12 by default). Architectures as strings."""
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
    rows = sorted(json.loads(WIDE.read_text())["archs"], key=lambda r: r["macs"])  # {"arch": "k3e3-skip-...", ...}
    wrong = [r["arch"] for r in rows if macs(Arch.parse(r["arch"])) != r["macs"]]  # the count_macs of its study
    assert not wrong, f"the MACs table disagrees with count_macs on {wrong}"
    n = min(cfg.wide_archs, len(rows))
    wide = [rows[i]["arch"] for i in sorted({round(j * (len(rows) - 1) / max(1, n - 1)) for j in range(n)})]
    return picked, wide, {"centre_macs": centre, "band_macs": [lo, hi], "in_band_pool": len(inband),
                          "skip_counts": sorted(sum(1 for t in a.split("-") if t == "skip") for a in picked),
                          "wide_macs": [macs(Arch.parse(a)) for a in wide]}


# ------------------------------------------------------------------ the reference: trained alone

def _train_alone(job: tuple) -> tuple[str, int, dict]:
    arch, seed, cfg_d, state = job
    import torch
    from torch.utils.data import DataLoader, Subset

    from nasdeploy.data import BUILTIN_SETTING as S, dataset
    from nasdeploy.finetune import FinetuneConfig, train_model
    from nasdeploy.nas.net import Network
    from nasdeploy.nas.recipe import zero_init_residuals
    from nasdeploy.nas.supernet import SPACE_FLAVOUR
    from nasdeploy.search.estimate import estimate

    cfg = StudyConfig(**cfg_d)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        net = Network(arch, SPACE_FLAVOUR[cfg.space], S.num_classes, S.stride_plan)
        zero_init_residuals(net)  # nasdeploy's initialisation, as the supernet's
        ft = FinetuneConfig(steps=cfg.ref_steps, batch_size=cfg.ref_batch, lr=cfg.ref_lr, seed=seed, device="cpu",
                            ckpt_every=max(1, cfg.ref_steps // 10))
        t0 = time.time()
        train_model(net, dataset("fashion-mnist", "train", S), ft, Path(state), progress=False)
        test = dataset("fashion-mnist", "test", S)
        e = estimate(net, DataLoader(Subset(test, range(min(cfg.test_images, len(test)))), batch_size=500))
    finally:
        torch.set_num_threads(threads)
    return arch, seed, {"top1": e.top1, "loss": e.loss, "seconds": round(time.time() - t0, 1)}


def references(cfg: StudyConfig, archs: list[str], out: Path) -> dict[str, dict[str, dict]]:
    """arch -> seed (as a string) -> the stand-alone run's test top-1 and loss; each run recorded as it ends, and
    each run's training state saved as it goes (a killed run continues where it was), removed once recorded."""
    import hashlib

    from nasdeploy.io import write_json

    path = out / "reference.json"
    done = json.loads(path.read_text()) if path.exists() else {}

    def state(a: str, s: int) -> Path:
        return out / "alone" / f"{hashlib.sha1(a.encode()).hexdigest()[:12]}_{s}.pt"

    jobs = [(a, s, asdict(cfg), str(state(a, s))) for s in range(cfg.ref_seeds) for a in archs
            if str(s) not in done.get(a, {})]
    if not jobs:
        return done
    (out / "alone").mkdir(parents=True, exist_ok=True)

    def record(results) -> None:
        for arch, seed, r in results:
            done.setdefault(arch, {})[str(seed)] = r
            write_json(path, done)
            state(arch, seed).unlink(missing_ok=True)
            print(f"alone seed {seed}: {r['top1']:.2f}% ({r['seconds']} s) {arch}", flush=True)

    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as pool:
            record(pool.map(_train_alone, jobs))
    else:
        record(map(_train_alone, jobs))
    return done


# ------------------------------------------------------------------ estimators

def supernet_runs(cfg: StudyConfig) -> dict[str, dict]:
    """name -> TrainConfig fields (beyond space and data)."""
    fair = dict(sampler="fair", batch_size=cfg.supernet_batch, lr=0.1)
    runs = {f"fair_{cfg.demo_steps}_s{s}": dict(fair, steps=cfg.demo_steps, seed=s) for s in cfg.supernet_seeds}
    runs |= {f"fair_{n}_s0": dict(fair, steps=n, seed=0) for n in cfg.larger}
    # the warm start alone: its end checkpoint (the largest path), then every candidate inherits it, no fair phase
    # (a third of the demo's steps; at least one, for a --tiny run's demo of one or two steps)
    warm = max(1, cfg.demo_steps // 3)
    runs["warm_only_s0"] = dict(fair, steps=warm, warm_start=warm, seed=0)
    # true SPOS (no warm start, no inheritance, no zero-init): uniform single paths, as many path-images as the
    # fair run (13 paths a step)
    runs["spos_s0"] = dict(sampler="uniform", batch_size=cfg.supernet_batch, lr=0.1, steps=cfg.demo_steps * 13,
                           seed=0, warm_start=0, zero_init_residual=False)
    return runs


def supernet_estimates(cfg: StudyConfig, archs: list[str], out: Path) -> dict[str, dict]:
    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.evaluate import recalibrated_subnet
    from nasdeploy.io import write_json
    from nasdeploy.nas.supernet_checkpoint import load_checkpoint, supernet_from
    from nasdeploy.nas.space import Arch
    from nasdeploy.nas.train import TrainConfig, train_supernet
    from nasdeploy.search import load_eval_data
    from nasdeploy.search.estimate import estimate

    calib, val = None, None
    res: dict[str, dict] = {}
    for name, kw in supernet_runs(cfg).items():
        d = out / "supernets" / name
        path = d / "estimates.json"
        if path.exists():
            res[name] = json.loads(path.read_text())
            continue
        if calib is None:
            calib, val = load_eval_data("fashion-mnist", cfg.calib_batches, cfg.calib_batch, cfg.eval_images,
                                        BUILTIN_SETTING)
        tc = TrainConfig(space=cfg.space, data="fashion-mnist", device="cpu", ckpt_every=20, **kw)
        t0 = time.time()
        trained = not (d / "supernet.pt").exists()  # else trained before this run was killed: scored only
        if trained:
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
        print(f"{name}: {'trained and scored' if trained else 'scored'} in {res[name]['seconds']} s", flush=True)
    return res


# ------------------------------------------------------------------ zero-cost proxies, at initialisation

def naswot(net, x) -> float:
    """NASWOT (Mellor et al., ICML 2021): log |K_H| of the binary codes of which units each image of the batch
    activates (K_H[i, j]: the units on which images i and j agree), in train mode as at the start of training.
    Higher: the untrained network tells the images apart better."""
    import torch
    from torch import nn

    codes = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp: codes.append((inp[0] > 0).flatten(1)))
             for m in net.modules() if isinstance(m, (nn.ReLU, nn.ReLU6, nn.Hardswish))]  # inputs: before in-place
    try:
        with torch.no_grad():
            net.train()(x)
    finally:
        for h in hooks:
            h.remove()
    c = torch.cat(codes, 1).double()
    return float(torch.linalg.slogdet(c @ c.t() + (1 - c) @ (1 - c).t())[1])


def synflow(net, size: int) -> float:
    """synflow (Tanaka et al., NeurIPS 2020; as a proxy, Abdelfattah et al., ICLR 2021): log of sum |theta x dR/dtheta|
    where R sums the outputs of the network with every parameter made positive, on one input of ones, in double
    precision, BN in eval mode (its running statistics at initialisation: identity). Higher is better."""
    import torch

    net = net.double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad()
    net(torch.ones(1, 3, size, size, dtype=torch.float64)).sum().backward()
    s = sum(float((p.grad * p.detach()).abs().sum()) for p in net.parameters() if p.grad is not None)
    return math.log(s) if s > 0 else -math.inf


def zero_cost(cfg: StudyConfig, archs: list[str], out: Path) -> dict[str, dict[str, float]]:
    """arch -> NASWOT and synflow, each on a freshly initialised network (seed ``cfg.seed``) built by
    nasdeploy.nas.net.Network; NASWOT on the first ``zero_cost_images`` training images. Cached per architecture."""
    import torch

    from nasdeploy.data import BUILTIN_SETTING as S, dataset
    from nasdeploy.io import write_json
    from nasdeploy.nas.net import Network
    from nasdeploy.nas.supernet import SPACE_FLAVOUR

    path = out / "zero_cost.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    todo = [a for a in archs if a not in res]
    if not todo:
        return res
    train = dataset("fashion-mnist", "train", S)
    x = torch.stack([train[i][0] for i in range(cfg.zero_cost_images)])

    def fresh(a: str):
        torch.manual_seed(cfg.seed)
        return Network(a, SPACE_FLAVOUR[cfg.space], S.num_classes, S.stride_plan)

    for a in todo:
        res[a] = {"naswot": naswot(fresh(a), x), "synflow": synflow(fresh(a), S.size)}
        write_json(path, res)
    return res


# ------------------------------------------------------------------ proxies with their signs

@dataclass(frozen=True)
class Proxy:
    """A ranking of architectures without training, with its direction: ``sign`` +1 ranks the larger ``value``
    first (more is better), -1 the smaller (fewer is better). Its tau is the reference's against sign x value."""
    name: str
    kind: str  # "free" (cost and structure: the best free proxy is chosen among these) or "zero-cost"
    sign: int
    what: str
    value: Callable[[str], float]

    def score(self, arch: str) -> float:
        return self.sign * self.value(arch)


def signed_proxies(cfg: StudyConfig, macs, lat, zc: dict[str, dict[str, float]]) -> list[Proxy]:
    """Each cost proxy in both directions (the protocol's amendment of 2026-12-04); the zero-cost proxies in the
    direction their papers rank by. ``lat`` None: no latency table, MACs stand in for predicted latency and the
    names say so (``latency_macs_standin``)."""
    import torch

    from nasdeploy.data import BUILTIN_SETTING as S
    from nasdeploy.nas.net import Network, count_params
    from nasdeploy.nas.space import Arch
    from nasdeploy.nas.supernet import SPACE_FLAVOUR

    @lru_cache(maxsize=None)
    def params(a: str) -> float:
        with torch.device("meta"):  # shapes only
            return float(count_params(Network(a, SPACE_FLAVOUR[cfg.space], S.num_classes, S.stride_plan)))

    def n_macs(a: str) -> float:
        return float(macs(Arch.parse(a)))

    def skips(a: str) -> float:
        return float(sum(c.skip for c in Arch.parse(a)))

    if lat is None:
        latency = ("latency_macs_standin", "predicted latency (no latency table given: MACs stand in for it)", n_macs)
    else:
        latency = ("latency", "predicted latency (the latency table)", lambda a: float(lat(a)))
    pairs = [("macs", "fewest_macs", "multiply-adds", n_macs), ("params", "fewest_params", "parameters", params),
             ("most_skips", "fewest_skips", "skip layers", skips), (latency[0], f"lowest_{latency[0]}", *latency[1:])]
    out = []
    for more, fewer, what, fn in pairs:
        out += [Proxy(more, "free", +1, f"{what}, more is better", fn),
                Proxy(fewer, "free", -1, f"{what}, fewer is better", fn)]
    return out + [Proxy("naswot", "zero-cost", +1, "NASWOT at initialisation, higher is better",
                        lambda a: zc[a]["naswot"]),
                  Proxy("synflow", "zero-cost", +1, "log synflow at initialisation, higher is better",
                        lambda a: zc[a]["synflow"])]


# ------------------------------------------------------------------ statistics

def kendall_b(x, y) -> float:
    """Kendall's tau-b; NaN where it is undefined (fewer than two architectures, or either ranking constant)."""
    from scipy.stats import kendalltau

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(kendalltau(x, y).statistic)


def spearman(x, y) -> float:
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(x, y).statistic)


def undefined(ref: np.ndarray, s: np.ndarray, names: tuple[str, str] = ("the reference", "this ranking")) -> str | None:
    """Why tau between two rankings is undefined (None where it is defined)."""
    if len(ref) < 2:
        return "fewer than two architectures"
    for name, x in zip(names, (ref, s)):
        if np.ptp(x) == 0:
            return f"{name} gives every architecture the same score"
    return None


def _ci(values: np.ndarray) -> list[float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all NaN: the interval is NaN too
        return [float(np.nanpercentile(values, 2.5)), float(np.nanpercentile(values, 97.5))]


def rank_stats(ref: np.ndarray, scores: dict[str, np.ndarray], best_proxy: str | None, rng: np.random.Generator,
               n_boot: int) -> dict:
    """tau-b and Spearman with bootstrap intervals over architectures; each estimator's tau minus the best free
    proxy's, paired on the same resamples; the regret of each estimator's top pick. Scores are signed: higher ranks
    first. An undefined tau is NaN, with the reason beside it."""
    n = len(ref)
    idx = rng.integers(0, n, size=(n_boot, n))
    out = {}
    boots = {}
    for name, s in scores.items():
        taus = np.array([kendall_b(ref[i], s[i]) for i in idx])
        boots[name] = taus
        top = np.flatnonzero(s == s.max())  # tied at the top: the mean over them, what a random pick expects
        out[name] = {"tau": kendall_b(ref, s), "tau_ci95": _ci(taus), "spearman": spearman(ref, s),
                     "regret": float(ref.max() - ref[top].mean())}
        why = undefined(ref, s)
        if why:
            out[name]["tau_undefined"] = why
    if best_proxy:
        for name in scores:
            out[name]["minus_best_proxy"] = float(out[name]["tau"] - out[best_proxy]["tau"])
            out[name]["minus_best_proxy_ci95"] = _ci(boots[name] - boots[best_proxy])
    return out


def analyse(cfg: StudyConfig, band: list[str], wide: list[str], ref: dict, sn: dict, proxies: list[Proxy]) -> dict:
    rng = np.random.default_rng(cfg.seed)
    out = {}
    for view, archs in (("band", band), ("wide", wide)):
        seeds = [np.array([ref[a][str(s)]["top1"] for a in archs]) for s in range(cfg.ref_seeds)]
        reference = np.mean(seeds, axis=0)
        scores, meta = {}, {}
        for p in proxies:
            raw = np.array([p.value(a) for a in archs], float)
            scores[p.name] = p.sign * raw
            meta[p.name] = {"kind": p.kind, "sign": p.sign, "what": p.what, "values": raw.tolist()}
        for name, r in sn.items():
            for metric, sign, what in (("top1", +1, "top-1 on search-validation, higher is better"),
                                       ("loss", -1, "mean cross-entropy on search-validation, lower is better")):
                raw = np.array([r["estimates"][a][metric] for a in archs], float)
                scores[f"{name}_{metric}"] = sign * raw
                meta[f"{name}_{metric}"] = {"kind": "supernet", "sign": sign, "what": f"supernet {name}: {what}",
                                            "values": raw.tolist()}
        free = {p.name: kendall_b(reference, scores[p.name]) for p in proxies if p.kind == "free"}
        free = {k: v for k, v in free.items() if not math.isnan(v)}
        best_proxy = max(free, key=free.get) if free else None  # among the signed free proxies, on the point estimate
        stats = rank_stats(reference, scores, best_proxy, rng, cfg.bootstrap)
        est = [k for k in scores if meta[k]["kind"] == "supernet"]
        ctl = [k for k in est if k.startswith("warm_only")]  # each estimator minus the warm-start-only control
        if ctl:
            idx = rng.integers(0, len(archs), size=(cfg.bootstrap, len(archs)))
            for k in est:
                for c in ctl:
                    if c.rsplit("_", 1)[1] != k.rsplit("_", 1)[1]:
                        continue
                    d = np.array([kendall_b(reference[i], scores[k][i]) - kendall_b(reference[i], scores[c][i])
                                  for i in idx])
                    stats[k]["minus_warm_only"] = float(stats[k]["tau"] - stats[c]["tau"])
                    stats[k]["minus_warm_only_ci95"] = _ci(d)
        two = cfg.ref_seeds > 1
        seed_tau = kendall_b(seeds[0], seeds[1]) if two else None
        out[view] = {"archs": archs, "reference_top1": reference.tolist(), "seed_tops": [s.tolist() for s in seeds],
                     "reference_spread_points": float(reference.max() - reference.min()),
                     "seed_vs_seed_tau": seed_tau,
                     "seed_vs_seed_tau_undefined": (undefined(seeds[0], seeds[1], ("seed 0", "seed 1")) if two else
                                                    "one reference seed: the reference's reliability is not measured"),
                     "seed_abs_diff_mean": float(np.mean(np.abs(seeds[0] - seeds[1]))) if two else None,
                     "best_free_proxy": best_proxy,
                     "estimators": {k: meta[k] | stats[k] for k in scores}}
    return out


def latency_predictor(cfg: StudyConfig, out: Path):
    """Predicted latency (ms) of an architecture and where it comes from; (None, why) without a table."""
    if cfg.lut == "none":
        return None, "none given: MACs stand in for predicted latency (latency_macs_standin)"
    from nasdeploy.data import BUILTIN_SETTING as S
    from nasdeploy.latency import LatencyTable, Settings, measure_table

    p = Path(cfg.lut)
    if cfg.lut == "measure":  # this machine's ONNX Runtime fp32 table at batch 1, the built-in setting
        p = out / "lut_onnxruntime_fp32.json"
        measure_table(Settings.for_input(cfg.space, "cpu", "onnxruntime", 1, "fp32", S, warmup=3, repeats=20), p,
                      progress=False)
    t = LatencyTable.load(p, space=cfg.space)
    if (t.input_size, list(t.stride_plan or []), t.num_classes) != (S.size, list(S.stride_plan), S.num_classes):
        raise SystemExit(f"ranking_study: {p} was measured at {t.input_size} px, strides {t.stride_plan}, "
                         f"{t.num_classes} classes; the study needs the built-in setting ({S.describe()})")
    return t.predict, f"{t.describe()} ({p})"


def main(argv: list[str] | None = None) -> dict | None:
    ap = parser()
    args = ap.parse_args(argv)
    cfg = config_from(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check_out(cfg, out)
    t0 = time.time()
    seconds: dict[str, float] = {}  # this invocation's time per stage (a rerun on a finished --out: near nothing)

    def lap(stage: str) -> None:
        seconds[stage] = round(time.time() - t0 - sum(seconds.values()), 2)

    macs = macs_table(cfg.space)
    band, wide, band_info = choose_archs(cfg, macs)
    lap("archs")
    print(f"band: {len(band)} architectures, MACs {band_info['band_macs'][0] / 1e6:.2f}-"
          f"{band_info['band_macs'][1] / 1e6:.2f}M, skips {band_info['skip_counts']}; wide: {len(wide)}", flush=True)
    if args.stage == "archs":
        return None
    archs = band + [a for a in wide if a not in band]
    ref = references(cfg, archs, out)
    lap("reference")
    if args.stage == "reference":
        return None
    sn = supernet_estimates(cfg, archs, out)
    lap("supernets")
    if args.stage == "supernets":
        return None
    zc = zero_cost(cfg, archs, out)
    lap("zero_cost")
    lat, lat_source = latency_predictor(cfg, out)
    lap("latency")
    from nasdeploy.io import provenance, write_json
    from nasdeploy.isa import this_cpu

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    command = shlex.join(["python", "-m", "benchmarks.ranking_study",
                          *(sys.argv[1:] if argv is None else argv)])
    views = analyse(cfg, band, wide, ref, sn, signed_proxies(cfg, macs, lat, zc))
    lap("analysis")
    res = {"config": asdict(cfg), "tiny": args.tiny, "command": command, "commit": commit, "band": band_info,
           "latency_source": lat_source, "cpu": this_cpu().as_dict(), "hours": round((time.time() - t0) / 3600, 4),
           "seconds": seconds,
           "supernets": {k: {kk: v[kk] for kk in ("config", "loss_last", "seconds")} for k, v in sn.items()},
           "views": views, "provenance": provenance()}
    if args.tiny:
        res["note"] = "--tiny: a smoke run, not a result"
    write_json(out / "ranking_study.json", res)
    if args.json:
        write_json(args.json, res)
    for view, r in res["views"].items():
        seed_tau = r["seed_vs_seed_tau"]
        seed_tau = (f"{seed_tau:+.3f}" if seed_tau is not None and not math.isnan(seed_tau)
                    else f"undefined ({r['seed_vs_seed_tau_undefined']})")
        print(f"\n{view}: reference spread {r['reference_spread_points']:.2f} points, seed-vs-seed tau {seed_tau}, "
              f"best free proxy {r['best_free_proxy']}")
        for k, s in sorted(r["estimators"].items(), key=lambda kv: (math.isnan(kv[1]["tau"]), -kv[1]["tau"])):
            if "tau_undefined" in s:
                print(f"  {k:32s} {'+' if s['sign'] > 0 else '-'} tau undefined: {s['tau_undefined']}")
                continue
            extra = (f" minus best proxy {s['minus_best_proxy']:+.2f} [{s['minus_best_proxy_ci95'][0]:+.2f}, "
                     f"{s['minus_best_proxy_ci95'][1]:+.2f}]" if "minus_best_proxy" in s else "")
            print(f"  {k:32s} {'+' if s['sign'] > 0 else '-'} tau {s['tau']:+.3f} [{s['tau_ci95'][0]:+.2f}, "
                  f"{s['tau_ci95'][1]:+.2f}] regret {s['regret']:.2f}{extra}")
    return res


if __name__ == "__main__":
    main()
