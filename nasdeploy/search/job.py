"""The whole search behind `nasdeploy search` and `nasdeploy search-worker`: inputs, the study, the workers, the
outputs (pareto.json with a front per engine, pareto.png, best.toml and best.pt)."""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..backends import table_backend
from ..data import InputSetting
from ..errors import UsageError
from ..io import provenance, write_json
from ..latency import EngineTables, Settings, measure_table
from ..net import Network, count_macs, count_params
from ..pareto import Candidate, pareto_front
from ..progress import progress_bar
from ..space import Arch, Choice, get_space
from ..supernet import SPACE_FLAVOUR
from . import study as S
from .estimate import CRITERIA, Estimate, choose, estimate, paired
from .problem import check_target, space_problem, spread

log = logging.getLogger(__name__)
OBJECTIVES = ("accuracy", "latency", "params")


@dataclass
class SearchConfig:
    target_ms: float
    # what NSGA-II selects by; the latency target is a hard constraint either way, and the fronts are always
    # reported over accuracy and latency. Accuracy alone found better architectures than random search on
    # NAS-Bench-Macro where accuracy and latency together did not (benchmarks/README)
    objectives: tuple[str, ...] = ("accuracy",)
    population: int = 16
    generations: int = 4
    seed: int = 0
    calib_batches: int = 4
    calib_batch_size: int = 64
    eval_images: int = 1000  # of the search-validation split
    accuracy_proxy: bool = False
    device: str = "cpu"
    storage: str | None = None  # default: OUT/search.db (SQLite)
    study_name: str | None = None
    criterion: str = "top1"  # what an estimate is compared by: top-1, or the cross-entropy loss (nasdeploy.search.estimate)
    heartbeat: int = 30  # seconds; a trial silent for two of them is failed and run again by another worker

    @property
    def trials(self) -> int:
        return self.population * self.generations

    def check(self) -> "SearchConfig":
        for o in self.objectives:
            if o not in OBJECTIVES:
                raise UsageError(f"unknown objective '{o}': choose from {', '.join(OBJECTIVES)}")
        if "accuracy" not in self.objectives:
            raise UsageError("--objectives must include accuracy")
        if self.population < 2 or self.generations < 1:
            raise UsageError("--population must be at least 2 and --generations at least 1")
        if self.criterion not in CRITERIA:
            raise UsageError(f"--criterion must be one of {', '.join(CRITERIA)}, not '{self.criterion}'")
        if self.eval_images < 1 or self.calib_batches < 1:
            raise UsageError("--eval-images and --calib-batches must be at least 1")
        if self.heartbeat < 1:
            raise UsageError(f"--heartbeat must be at least 1 second, got {self.heartbeat}")
        return self


@dataclass
class SearchInputs:
    space: str | None = None
    supernet: str | None = None
    lut: str | list[str] | None = None  # one table, or one per candidate engine
    data: str | None = None
    device: str = "cpu"
    batch: int = 1
    dtype: str = "fp32"
    backend: str | None = None
    input_size: int | None = None


@dataclass
class SearchResult:
    candidates: list[Candidate]
    front: list[Candidate]
    best: Candidate | None
    fastest_ms: float
    accuracy_label: str
    references: dict[str, dict] = field(default_factory=dict)
    throughput: dict = field(default_factory=dict)  # this worker's trials, evaluations and time
    fronts_by_engine: dict[str, list[dict]] = field(default_factory=dict)
    spread: float = 0.0  # the share of [fastest possible, target] the front spans
    resolved: dict = field(default_factory=dict)  # the front of what the paired estimates can tell apart
    choice: dict = field(default_factory=dict)  # why the best was chosen (paired comparisons)
    splits: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)


# ------------------------------------------------------------------ evaluators

def _arch(tokens) -> Arch:
    return Arch(tuple(Choice.parse(t) for t in tokens))


class SupernetEvaluator:
    """An architecture's subnet, BN recalibrated on search-validation images, scored image by image on others of
    the same split (never the test split)."""

    def __init__(self, supernet, calib: list, val: list, device: str = "cpu", criterion: str = "top1") -> None:
        self.supernet, self.calib, self.val, self.device, self.criterion = supernet, calib, val, device, criterion
        self.images = sum(len(b[1]) for b in val)
        self.label = "supernet loss (negated)" if criterion == "loss" else "supernet top-1 (%)"

    def subnet(self, arch: Arch):
        from ..evaluate import recalibrated_subnet

        return recalibrated_subnet(self.supernet, arch, self.calib, self.device)

    def estimate(self, arch: Arch) -> Estimate:
        return estimate(self.subnet(arch), self.val, self.device)

    def __call__(self, tokens) -> S.Evaluation:
        arch = _arch(tokens)
        e = self.estimate(arch)
        net = self.subnet_shape(arch)
        return S.Evaluation(e.score(self.criterion), {**e.to_attrs(), "params": count_params(net),
                                                      "macs": count_macs(net, self.supernet.input_setting.size)})

    def subnet_shape(self, arch: Arch) -> Network:
        sn = self.supernet
        return Network(arch, SPACE_FLAVOUR[sn.space.name], sn.num_classes, sn.stride_plan)


class ProxyEvaluator:
    """Predictor-only mode: NOT accuracy. Scores an architecture by log10 of its MACs (bigger ~ better)."""

    label = "PROXY: log10(MACs), not accuracy"

    def __init__(self, space_name: str, setting: InputSetting) -> None:
        self.space_name, self.setting = space_name, setting

    def __call__(self, tokens) -> S.Evaluation:
        net = Network(_arch(tokens), SPACE_FLAVOUR[self.space_name], self.setting.num_classes,
                      self.setting.stride_plan)
        macs = count_macs(net, self.setting.size)
        return S.Evaluation(math.log10(macs), {"params": count_params(net), "macs": macs})


def load_eval_data(data: str, calib_batches: int, calib_batch_size: int, eval_images: int,
                   setting: InputSetting) -> tuple[list, list]:
    """BN-recalibration batches and evaluation batches, both of the search-validation split (never the test split),
    materialised once: the first ``eval_images`` images are scored; the calibration batches are a seeded sample of
    the rest (of all of it when the split is smaller than both)."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from .. import data as D

    val = D.dataset(data, "search_val", setting)
    n_eval = min(eval_images, len(val))
    rest = list(range(n_eval, len(val))) or list(range(len(val)))
    g = torch.Generator().manual_seed(1234)
    pick = [rest[i] for i in torch.randperm(len(rest), generator=g)[: calib_batches * calib_batch_size].tolist()]
    calib = list(DataLoader(Subset(val, pick), batch_size=calib_batch_size))
    return calib, list(DataLoader(Subset(val, list(range(n_eval))), batch_size=250))


# ------------------------------------------------------------------ the job

@dataclass
class _Setup:
    space: str
    setting: InputSetting
    tables: EngineTables
    evaluator: object
    supernet: object | None
    data: str | None


def _setup(inp: SearchInputs, cfg: SearchConfig, out: Path, progress: bool) -> _Setup:
    from .. import data as D

    if inp.supernet:
        from ..train import load_checkpoint, supernet_from

        ck = load_checkpoint(inp.supernet)  # read once: a SCARLET supernet checkpoint is ~350 MB
        sn = supernet_from(ck, inp.supernet, cfg.device)
        if inp.space and inp.space != sn.space.name:
            raise UsageError(f"--space {inp.space} but {inp.supernet} is a {sn.space.name} supernet")
        data = inp.data or ck.get("train_config", {}).get("data", D.BUILTIN)
        setting = sn.input_setting
        if D.num_classes(data) != setting.num_classes:
            raise UsageError(f"{data} has {D.num_classes(data)} classes, the supernet {setting.num_classes}: give the "
                             "data it was trained on")
        calib, val = load_eval_data(data, cfg.calib_batches, cfg.calib_batch_size, cfg.eval_images, setting)
        space, evaluator, supernet = sn.space.name, SupernetEvaluator(sn, calib, val, cfg.device, cfg.criterion), sn
    elif cfg.accuracy_proxy:
        space, size = inp.space or "scarlet", inp.input_size or 224
        setting = InputSetting.default_for(size)
        evaluator, supernet, data = ProxyEvaluator(space, setting), None, None
    else:
        raise UsageError("no supernet to estimate accuracy with: train one (nasdeploy train-supernet --out "
                         "runs/supernet) and pass --supernet runs/supernet/supernet.pt, or add --accuracy-proxy to "
                         "rank by a MACs proxy")
    if inp.lut:
        tables = EngineTables.load(inp.lut, space=space)
    else:  # measured on this machine for --device/--batch/--dtype, cached in the output folder
        s = Settings.for_input(space, inp.device, inp.backend or table_backend(inp.device), inp.batch, inp.dtype,
                               setting)
        measure_table(s, out / "lut.json", progress=progress)
        tables = EngineTables.load(out / "lut.json", space=space)
    check_lut_matches(tables, space, setting)
    return _Setup(space, setting, tables, evaluator, supernet, data)


def check_lut_matches(tables: EngineTables, space: str, setting: InputSetting) -> None:
    from ..errors import ArtifactError

    t = tables.first
    if t.space != space:
        raise ArtifactError(f"latency table {t.path} is for the {t.space} space, the supernet is {space}: "
                            f"measure one with --space {space}")
    if (t.stride_plan or None) != (list(setting.stride_plan) if setting.stride_plan else None) \
            or t.input_size != setting.size:
        raise ArtifactError(f"latency table {t.path} was measured for {t.input_size}px inputs (strides "
                            f"{t.stride_plan}), the supernet is for {setting.describe()}: measure a matching table "
                            f"(nasdeploy latency-table --input-size {setting.size})")
    if t.num_classes != setting.num_classes:
        raise ArtifactError(f"latency table {t.path} has a {t.num_classes}-class head, the supernet "
                            f"{setting.num_classes}: measure it with --num-classes {setting.num_classes}")


def _meta(setup: _Setup, cfg: SearchConfig, inp: SearchInputs) -> dict:
    from .. import data as D

    return {"space": setup.space, "target_ms": cfg.target_ms, "objectives": list(cfg.objectives),
            "criterion": cfg.criterion, "budget": cfg.trials, "population": cfg.population,
            "generations": cfg.generations, "seed": cfg.seed, "engines": sorted(setup.tables.tables),
            "luts": [str(Path(t.path).resolve()) for t in setup.tables.tables.values()],
            "supernet": str(Path(inp.supernet).resolve()) if inp.supernet else None, "data": setup.data,
            "accuracy_proxy": cfg.accuracy_proxy, "input": setup.setting.as_dict(),
            "evaluation": {"calib_batches": cfg.calib_batches, "calib_batch_size": cfg.calib_batch_size,
                           "eval_images": cfg.eval_images, "split": "search_val"},
            "splits": D.split_record(setup.data) if setup.data else None}


def _study(setup: _Setup, cfg: SearchConfig, inp: SearchInputs, out: Path):
    check_target(setup.tables, cfg.target_ms)
    problem = space_problem(get_space(setup.space), setup.tables, cfg.target_ms)
    out.mkdir(parents=True, exist_ok=True)
    storage = S.open_storage(cfg.storage or f"sqlite:///{(out / 'search.db').resolve()}", cfg.heartbeat)
    name = cfg.study_name or f"nasdeploy-{setup.space}-{cfg.target_ms:g}ms-{'-'.join(cfg.objectives)}"
    directions = ["maximize" if o == "accuracy" else "minimize" for o in cfg.objectives]
    study, _ = S.create_or_load(storage, name, directions, _meta(setup, cfg, inp), problem, cfg.population, cfg.seed)
    return study, problem


def _describe(tables: EngineTables):
    def describe(tokens) -> dict:
        engine, _ = tables.best(_arch(tokens))
        return {"engine": engine, "latency_by_engine": tables.by_engine(_arch(tokens))}

    return describe


def _run(study, problem, setup: _Setup, cfg: SearchConfig, progress: bool) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective = S.make_objective(study, problem, setup.evaluator, cfg.objectives, cfg.trials, _describe(setup.tables))
    done = S.counts(study)["COMPLETE"]
    bar = progress_bar(progress)
    task = bar.add_task(f"search {setup.space} <= {cfg.target_ms:g} ms", total=cfg.trials, completed=done) \
        if bar else None
    try:
        if bar:
            bar.start()
        stats = S.work(study, objective, cfg.trials,
                       on_trial=(lambda: bar.update(task, completed=S.counts(study)["COMPLETE"])) if bar else None)
    finally:
        if bar:
            bar.stop()
    minutes = stats["seconds"] / 60
    stats["evaluated_per_minute"] = round(stats["evaluated"] / minutes, 2) if minutes > 0 and stats["evaluated"] \
        else None
    return stats


def search(inp: SearchInputs, cfg: SearchConfig, out: str | Path, progress: bool = True) -> SearchResult:
    """Create (or continue) the study in ``cfg.storage`` and work on it until its budget is complete; write the
    outputs. Other processes may work on the same study meanwhile (`nasdeploy search-worker`)."""
    out = Path(out)
    cfg.check()
    setup = _setup(inp, cfg, out, progress)
    study, problem = _study(setup, cfg, inp, out)
    stats = _run(study, problem, setup, cfg, progress)
    return write_outputs(study, setup, cfg, out, stats)


def _from_meta(study) -> tuple[SearchInputs, SearchConfig]:
    meta = study.user_attrs.get(S.META)
    if not meta:
        raise UsageError(f"study '{study.study_name}' was not made by `nasdeploy search`: nothing to work on")
    e = meta["evaluation"]
    inp = SearchInputs(meta["space"], meta["supernet"], meta["luts"], meta["data"])
    cfg = SearchConfig(meta["target_ms"], tuple(meta["objectives"]), meta["population"], meta["generations"],
                       meta["seed"], e["calib_batches"], e["calib_batch_size"], e["eval_images"],
                       meta["accuracy_proxy"], criterion=meta["criterion"], study_name=study.study_name)
    if meta["accuracy_proxy"]:
        inp.input_size = meta["input"]["size"]
    return inp, cfg


def search_worker(storage: str, study_name: str | None = None, device: str = "cpu", heartbeat: int = 30,
                  progress: bool = True) -> dict:
    """Work on a study made by `nasdeploy search` (its configuration is stored in it) until its budget is
    complete; returns this worker's trials, evaluations and time."""
    st = S.open_storage(storage, heartbeat)
    inp, cfg = _from_meta(S.load(st, study_name))
    cfg.storage, cfg.device, cfg.heartbeat = storage, device, heartbeat
    inp.device = device
    setup = _setup(inp, cfg, Path("."), progress)
    study, problem = _study(setup, cfg, inp, Path("."))
    return _run(study, problem, setup, cfg, progress)


def report(storage: str, study_name: str | None, out: str | Path, device: str = "cpu") -> SearchResult:
    """The outputs of a study as it stands (pareto.json, pareto.png, best.toml, best.pt), without running trials."""
    st = S.open_storage(storage, None)
    study = S.load(st, study_name)
    inp, cfg = _from_meta(study)
    cfg.storage, cfg.device = storage, device
    setup = _setup(inp, cfg, Path(out), False)
    return write_outputs(study, setup, cfg, Path(out), {"trials": 0, "evaluated": 0, "seconds": 0.0})


# ------------------------------------------------------------------ results and outputs

def _candidates(study, setup: _Setup, cfg: SearchConfig) -> list[dict]:
    out = []
    for t in S.completed(study):
        a = t.user_attrs
        est = Estimate.from_attrs(a) if "correct_b64" in a else None
        out.append({"arch": a["arch"], "trial": t.number, "cost": a["cost"], "engine": a.get("engine", ""),
                    "by_engine": a.get("latency_by_engine", {}), "params": a.get("params", 0), "macs": a.get("macs", 0),
                    "score": a["score"], "estimate": est, "feasible": a["cost"] <= cfg.target_ms})
    return out


def _candidate(c: dict, evaluator, latency: float | None = None, engine: str | None = None) -> Candidate:
    e = c["estimate"]
    acc = e.top1 if e is not None else c["score"]
    ci = _wilson(e) if e is not None else None
    return Candidate(c["arch"], acc, latency if latency is not None else c["cost"], c["params"], c["macs"],
                     c["feasible"], c["trial"], ci, c["score"], engine or c["engine"], e.loss if e else None)


def _wilson(e: Estimate) -> tuple[float, float]:
    from ..evaluate import wilson

    lo, hi = wilson(int(e.correct.sum()), e.images)
    return round(lo, 3), round(hi, 3)


def write_outputs(study, setup: _Setup, cfg: SearchConfig, out: Path, stats: dict) -> SearchResult:
    from ..plots import pareto_plot

    cands = _candidates(study, setup, cfg)
    feasible = [c for c in cands if c["feasible"]]
    cand_objs = [_candidate(c, setup.evaluator) for c in cands]
    front_objectives = front_of(cfg)
    front = pareto_front(cand_objs, front_objectives)
    fastest_arch, fastest = setup.tables.fastest()
    pick, why = choose(feasible, cfg.criterion) if feasible and feasible[0]["estimate"] is not None else (
        max(feasible, key=lambda c: (c["score"], -c["cost"])) if feasible else None, {"rule": "highest score"})
    best = next((c for c in cand_objs if pick and c.arch == pick["arch"]), None)
    by_engine = {}
    for engine in setup.tables.tables:
        pts = [_candidate(c, setup.evaluator, c["by_engine"].get(engine, c["cost"]), engine) for c in cands
               if c["by_engine"].get(engine, c["cost"]) <= cfg.target_ms]
        by_engine[engine] = [asdict(p) for p in pareto_front(pts, front_objectives)]
    result = SearchResult(cand_objs, front, best, fastest, getattr(setup.evaluator, "label", "accuracy"),
                          throughput=stats, fronts_by_engine=by_engine,
                          spread=round(spread([c.latency_ms for c in front], fastest, cfg.target_ms), 3),
                          choice=why, splits=study.user_attrs.get(S.META, {}).get("splits") or {},
                          evaluation={"calib_batches": cfg.calib_batches, "calib_batch_size": cfg.calib_batch_size,
                                      "eval_images": getattr(setup.evaluator, "images", None) or cfg.eval_images,
                                      "split": "search_val", "criterion": cfg.criterion})
    result.references = _references(setup, cand_objs, pick)
    paired_front = _paired_vs(pick, cands, cfg.criterion, {c.arch for c in front})
    resolved = resolved_front(feasible, cfg.criterion)
    result.resolved = {"archs": [c["arch"] for c in resolved], "latency_ms": [c["cost"] for c in resolved],
                       "spread": round(spread([c["cost"] for c in resolved], fastest, cfg.target_ms), 3)}
    write_json(out / "pareto.json", {
        "target_ms": cfg.target_ms, "objectives": list(cfg.objectives), "accuracy": result.accuracy_label,
        "criterion": cfg.criterion, "accuracy_proxy": cfg.accuracy_proxy, "fastest_possible_ms": fastest,
        "fastest_possible_arch": str(fastest_arch), "splits": result.splits, "evaluation": result.evaluation,
        "tables": {e: {"path": str(t.path), **t.setting(), "device_name": t.device_name,
                       "calibrated": bool(t.calibration)} for e, t in setup.tables.tables.items()},
        "front": [asdict(c) for c in front], "front_spread": result.spread, "fronts_by_engine": by_engine,
        "front_resolved": {**result.resolved, "rule": "feasible architectures that no other at most as slow beats "
                                                      "with a paired 95% interval above 0"},
        "best": asdict(best) if best else None, "choice": why, "paired_vs_best": paired_front,
        "references": result.references, "trials": len(cands),
        "evaluated": sum(1 for t in S.completed(study) if t.user_attrs.get("evaluated")),
        "throughput": stats, "study": {"name": study.study_name, "states": S.counts(study)},
        "provenance": provenance()})
    refs = {n: (r["latency_ms"], r["accuracy"], r.get("ci95")) for n, r in result.references.items()}
    pareto_plot(out / "pareto.png", [(c.latency_ms, c.accuracy) for c in cand_objs],
                [(c.latency_ms, c.accuracy, c.ci95) for c in front], cfg.target_ms, refs,
                (best.latency_ms, best.accuracy) if best else None,
                f"{setup.space}: {len(cands)} trials, {setup.tables.describe()}", result.accuracy_label)
    if best is not None:
        _write_card(best, setup, cfg, out, len(cands))
    return result


def front_of(cfg: SearchConfig) -> tuple[str, ...]:
    """The objectives a front is drawn over: accuracy and latency always, parameters when searched by them."""
    return ("accuracy", "latency") + (("params",) if "params" in cfg.objectives else ())


def resolved_front(cands: list[dict], criterion: str) -> list[dict]:
    """The architectures that no other at most as slow beats with its paired 95% interval above 0: the front of
    what the estimates can tell apart (a point-estimate front picks among ties by noise), by latency."""
    if not cands or cands[0]["estimate"] is None:
        return []
    out = [c for c in cands
           if not any(o is not c and o["cost"] <= c["cost"] and paired(o["estimate"], c["estimate"], criterion)[1] > 0
                      for o in cands)]
    return sorted({c["arch"]: c for c in out}.values(), key=lambda c: c["cost"])


def _paired_vs(pick: dict | None, cands: list[dict], criterion: str, archs: set[str]) -> dict:
    """Each front architecture against the chosen one, paired over the same images: (mean, 95% interval)."""
    if pick is None or pick["estimate"] is None:
        return {}
    return {c["arch"]: [round(v, 4) for v in paired(c["estimate"], pick["estimate"], criterion)]
            for c in cands if c["arch"] in archs and c["arch"] != pick["arch"] and c["estimate"] is not None}


def _references(setup: _Setup, cands: list[Candidate], pick: dict | None) -> dict[str, dict]:
    """Zoo models of this space family placed in the same tables (and, with a supernet, scored as its subnets,
    paired against the chosen architecture)."""
    from .. import zoo

    out: dict[str, dict] = {}
    for name, card in zoo.cards().items():
        if card.flavour != SPACE_FLAVOUR[setup.space] or card.num_classes != 1000:
            continue
        arch = get_space(setup.space).validate(card.arch)
        engine, lat = setup.tables.best(arch)
        entry = {"arch": str(arch), "latency_ms": lat, "engine": engine, "accuracy": None, "ci95": None}
        if setup.supernet is not None:
            e = setup.evaluator.estimate(arch)
            entry.update(accuracy=e.top1, loss=e.loss, ci95=_wilson(e))
            if pick is not None and pick["estimate"] is not None:
                entry["paired_vs_best"] = [round(v, 4) for v in paired(e, pick["estimate"], setup.evaluator.criterion)]
        out[name] = entry
    return out


def _write_card(best: Candidate, setup: _Setup, cfg: SearchConfig, out: Path, trials: int) -> None:
    from ..zoo import Card, save_checkpoint

    arch = get_space(setup.space).validate(best.arch)
    skips = [i for i, c in enumerate(arch) if c.skip] if setup.supernet is not None else []
    card = Card.for_setting(setup.setting, name=f"{setup.space}_searched_{cfg.target_ms:g}ms", space=setup.space,
                            flavour=SPACE_FLAVOUR[setup.space], arch=arch, stabilizers=skips,
                            description=f"searched by nasdeploy under {cfg.target_ms:g} ms on "
                                        f"{setup.tables.describe()}",
                            counts={"params": best.params, "macs": best.macs},
                            search={"target_ms": cfg.target_ms, "predicted_latency_ms": best.latency_ms,
                                    "engine": best.engine, "accuracy": best.accuracy,
                                    "accuracy_kind": getattr(setup.evaluator, "label", ""), "criterion": cfg.criterion,
                                    "tables": [str(t.path) for t in setup.tables.tables.values()],
                                    "trials": trials})
    if setup.supernet is not None:
        save_checkpoint(setup.evaluator.subnet(arch), out / "best.pt", setting=setup.setting)
        card.checkpoint = {"file": "best.pt", "layout": "nasdeploy",
                           "note": "subnet inherited from the supernet, BN recalibrated; stabilizers fold on export"}
    card.write(out / "best.toml")
