"""The whole search behind `nasdeploy search` and `nasdeploy search-worker`: inputs, the study, the workers, the
outputs (pareto.json with a front per engine, pareto.png, best.toml and best.pt)."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from ..backends import table_backend
from ..data import InputSetting
from ..errors import DataError, UsageError
from ..latency import EngineTables, Settings, measure_table
from ..nas.net import Network, count_macs, count_params
from ..nas.space import Arch, Choice, get_space
from ..nas.supernet import SPACE_FLAVOUR
from ..progress import progress_bar
from . import study as S
from .config import SearchConfig, SearchInputs, SearchResult
from .estimate import Estimate, estimate
from .outputs import SearchRun, write_outputs
from .problem import Problem, check_target, space_problem

log = logging.getLogger(__name__)
# ------------------------------------------------------------------ evaluators

def _arch(tokens) -> Arch:
    return Arch(tuple(Choice.parse(t) for t in tokens))


class SupernetEvaluator:
    """An architecture's subnet, BN recalibrated on search-validation images, scored image by image on others of
    the same split (never the test split)."""

    def __init__(self, supernet, calib, val, device: str = "cpu", criterion: str = "top1") -> None:
        self.supernet, self.calib, self.val, self.device, self.criterion = supernet, calib, val, device, criterion
        self.images = getattr(val, "images", None) or sum(len(b[1]) for b in val)
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


class Batches:
    """A re-iterable stream of (images, labels) batches of a dataset's subset, read afresh on each pass (the whole
    search-validation split of an ImageNet folder does not fit in memory)."""

    def __init__(self, ds, indices: list[int], batch_size: int) -> None:
        self.ds, self.indices, self.batch_size = ds, indices, batch_size
        self.images = len(indices)

    def __iter__(self):
        from torch.utils.data import DataLoader, Subset

        for x, y, *_ in DataLoader(Subset(self.ds, self.indices), batch_size=self.batch_size):
            yield x, y


def race_evaluator(setup: "SearchSetup", cfg: SearchConfig) -> SupernetEvaluator | None:
    """The finalists' race: every image of the search-validation split (``cfg.race_images`` at most, 0: all),
    BN recalibrated on ``cfg.race_calib_images`` training images (a seeded sample; the search-validation images
    are all scored)."""
    import torch

    from .. import data as D

    if setup.supernet is None:
        return None
    val = D.dataset(setup.data, "search_val", setup.setting)
    n = len(val) if cfg.race_images <= 0 else min(cfg.race_images, len(val))
    train = D.dataset(setup.data, "train", setup.setting)
    g = torch.Generator().manual_seed(4321)
    pick = torch.randperm(len(train), generator=g)[: cfg.race_calib_images].tolist()
    calib = Batches(train, pick, 64)
    return SupernetEvaluator(setup.supernet, calib, Batches(val, list(range(n)), 250), cfg.device, cfg.criterion)


# ------------------------------------------------------------------ the job

@dataclass
class SearchSetup:
    """What a search works with, read once: the space, the input setting, the latency tables, the evaluator (with
    the supernet and its data, or the MACs proxy)."""

    space: str
    setting: InputSetting
    tables: EngineTables
    evaluator: object
    supernet: object | None
    data: str | None


def setup_search(inp: SearchInputs, cfg: SearchConfig, out: Path, progress: bool) -> SearchSetup:
    """Read the search's inputs (supernet, its data, the tables; a table is measured into ``out`` if none is
    given) and check that they fit together."""
    from .. import data as D

    if inp.supernet:
        from ..nas.supernet_checkpoint import load_checkpoint, supernet_from

        ck = load_checkpoint(inp.supernet)  # read once: a SCARLET supernet checkpoint is ~350 MB
        sn = supernet_from(ck, inp.supernet, cfg.device)
        if inp.space and inp.space != sn.space.name:
            raise UsageError(f"--space {inp.space} but {inp.supernet} is a {sn.space.name} supernet")
        data = inp.data or ck.get("train_config", {}).get("data", D.BUILTIN)
        if not inp.data and data != D.BUILTIN and not Path(data).exists():
            raise DataError(f"data folder {data} does not exist: the supernet {inp.supernet} records it as the data "
                            "it was trained on; pass --data with where that folder is now")
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
    return SearchSetup(space, setting, tables, evaluator, supernet, data)


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


def _meta(setup: SearchSetup, cfg: SearchConfig, inp: SearchInputs) -> dict:
    """What the study stores: the search's settings (``SearchConfig.settings``) and what it was made on."""
    from .. import data as D

    return {"settings": cfg.settings(), "space": setup.space, "engines": sorted(setup.tables.tables),
            "luts": [str(Path(t.path).resolve()) for t in setup.tables.tables.values()],
            "supernet": str(Path(inp.supernet).resolve()) if inp.supernet else None, "data": setup.data,
            "input": setup.setting.as_dict(), "splits": D.split_record(setup.data) if setup.data else None}


def _problem(setup: SearchSetup, cfg: SearchConfig) -> Problem:
    """The search problem: the space's choices, latency from the tables, the target (a target no architecture can
    meet refused with the fastest possible)."""
    check_target(setup.tables, cfg.target_ms)
    return space_problem(get_space(setup.space), setup.tables, cfg.target_ms)


def _study(setup: SearchSetup, cfg: SearchConfig, inp: SearchInputs, out: Path):
    problem = _problem(setup, cfg)
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


def _run(study, problem, setup: SearchSetup, cfg: SearchConfig, progress: bool) -> dict:
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
    setup = setup_search(inp, cfg, out, progress)
    study, problem = _study(setup, cfg, inp, out)
    stats = _run(study, problem, setup, cfg, progress)
    return write_outputs(SearchRun(study, setup, problem, cfg, race_evaluator(setup, cfg)), out, stats, progress)


def study_config(study, **run) -> tuple[SearchInputs, SearchConfig]:
    """What a study was made with: its inputs, and its settings with this process's per-run fields (``run``)."""
    meta = study.user_attrs.get(S.META)
    if not meta:
        raise UsageError(f"study '{study.study_name}' was not made by `nasdeploy search`: nothing to work on")
    inp = SearchInputs(space=meta["space"], supernet=meta["supernet"], lut=meta["luts"], data=meta["data"],
                       device=run.get("device", "cpu"))
    cfg = SearchConfig.from_settings(S.stored_settings(meta), study_name=study.study_name, **run)
    if cfg.accuracy_proxy:
        inp.input_size = meta["input"]["size"]
    return inp, cfg


def search_worker(storage: str, study_name: str | None = None, device: str = "cpu", heartbeat: int = 30,
                  progress: bool = True) -> dict:
    """Work on a study made by `nasdeploy search` (its configuration is stored in it) until its budget is
    complete; returns this worker's trials, evaluations and time."""
    st = S.open_storage(storage, heartbeat)
    inp, cfg = study_config(S.load(st, study_name), storage=storage, device=device, heartbeat=heartbeat)
    setup = setup_search(inp, cfg, Path("."), progress)
    study, problem = _study(setup, cfg, inp, Path("."))
    return _run(study, problem, setup, cfg, progress)


def report(storage: str, study_name: str | None, out: str | Path, device: str = "cpu") -> SearchResult:
    """The outputs of a study as it stands (pareto.json, pareto.png, best.toml, best.pt), without running trials."""
    st = S.open_storage(storage, None)
    study = S.load(st, study_name)
    inp, cfg = study_config(study, storage=storage, device=device)
    setup = setup_search(inp, cfg, Path(out), False)
    run = SearchRun(study, setup, _problem(setup, cfg), cfg, race_evaluator(setup, cfg))
    return write_outputs(run, Path(out), {"trials": 0, "evaluated": 0, "seconds": 0.0})


