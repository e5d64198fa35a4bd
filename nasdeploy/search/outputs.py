"""A search's outputs: candidates from the study, the fronts (point-estimate, resolved, per engine), the choice,
pareto.json, pareto.png, best.toml and best.pt."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..io import provenance, write_json
from ..nas.space import get_space
from ..nas.supernet import SPACE_FLAVOUR
from ..pareto import FrontPoint, pareto_front
from . import finalists as F
from . import study as S
from .candidate import Candidate, wilson95
from .config import Chosen, Reference, ResolvedFront, SearchConfig, SearchResult
from .estimate import paired
from .problem import Problem, spread


@dataclass
class SearchRun:
    """What a search's outputs are drawn from: its study, its setup (tables, evaluator, supernet), the problem
    (feasibility), its settings and the race's evaluator (None for a proxy search)."""
    study: Any
    setup: Any
    problem: Problem
    cfg: SearchConfig
    race: Any = None

    def candidates(self) -> list[Candidate]:
        return [Candidate.from_trial(t, self.problem.meets) for t in S.completed(self.study)]


def write_outputs(run: SearchRun, out: Path, stats: dict, progress: bool = False) -> SearchResult:
    """The study's candidates and fronts; its finalists timed end to end and raced (on the whole
    search-validation split, where ``run`` has a race); the choice; pareto.json, pareto.png, best.toml and
    best.pt."""
    from ..plots import pareto_plot

    study, setup, problem, cfg, race = run.study, run.setup, run.problem, run.cfg, run.race
    cands = run.candidates()
    feasible = [c for c in cands if c.feasible]
    points = [c.study_point() for c in cands]
    front_objectives = front_of(cfg)
    front = pareto_front(points, front_objectives)
    fastest_arch, fastest = setup.tables.fastest()
    finals, pick, why = _final(run, feasible, {c.arch for c in front}, progress)
    best = pick.measured_point(cfg.criterion) if pick is not None else None
    by_engine = {}
    for engine in setup.tables.tables:
        pts = [c.study_point(c.predicted_ms.get(engine, c.predicted), engine) for c in cands
               if problem.meets(c.predicted_ms.get(engine, c.predicted))]
        by_engine[engine] = pareto_front(pts, front_objectives)
    result = SearchResult(points, front, best, fastest, getattr(setup.evaluator, "label", "accuracy"),
                          throughput=stats, fronts_by_engine=by_engine,
                          spread=round(spread([c.latency_ms for c in front], fastest, cfg.target_ms), 3),
                          choice=why, splits=study.user_attrs.get(S.META, {}).get("splits") or {},
                          evaluation={"calib_batches": cfg.calib_batches, "calib_batch_size": cfg.calib_batch_size,
                                      "eval_images": getattr(setup.evaluator, "images", None) or cfg.eval_images,
                                      "split": "search_val", "criterion": cfg.criterion,
                                      "race_images": race.images if race is not None else None,
                                      "race_calib_images": cfg.race_calib_images if race is not None else None})
    result.finalists = [f.finalist_record(cfg.criterion, cfg.target_ms) for f in finals]
    result.chosen = _chosen_record(pick, cfg) if pick is not None else None
    study_pick = max(feasible, key=lambda c: c.study_score) if feasible else None
    result.references = _references(setup, study_pick)
    paired_front = _paired_vs(study_pick, cands, cfg.criterion, {c.arch for c in front})
    resolved = resolved_front(feasible, cfg.criterion)
    result.resolved = ResolvedFront([c.arch for c in resolved], [c.predicted for c in resolved],
                                    round(spread([c.predicted for c in resolved], fastest, cfg.target_ms), 3))
    measured = F.measured_front(finals, cfg.criterion)
    result.settings = cfg.settings()
    write_json(out / "pareto.json", {
        "settings": result.settings, "target_ms": cfg.target_ms, "objectives": list(cfg.objectives), "accuracy": result.accuracy_label,
        "criterion": cfg.criterion, "accuracy_proxy": cfg.accuracy_proxy, "fastest_possible_ms": fastest,
        "fastest_possible_arch": str(fastest_arch), "splits": result.splits, "evaluation": result.evaluation,
        "tables": {e: {"path": str(t.path), **t.setting(), "device_name": t.device_name,
                       "calibrated": bool(t.calibration), "calibration": t.calibration}
                   for e, t in setup.tables.tables.items()},
        "front": [asdict(c) for c in front], "front_spread": result.spread,
        "fronts_by_engine": {e: [asdict(p) for p in front] for e, front in by_engine.items()},
        "front_resolved": {**asdict(result.resolved), "rule": "feasible architectures that no other at most as slow beats "
                                                      "with a paired 95% interval above 0"},
        "finalists": [asdict(f) for f in result.finalists],
        "front_measured": [f.arch for f in measured],
        "best": asdict(best) if best else None,
        "chosen": asdict(result.chosen) if result.chosen else {}, "choice": why,
        "paired_vs_study_best": paired_front,
        "references": {n: asdict(r) for n, r in result.references.items()}, "trials": len(cands),
        "evaluated": sum(1 for t in S.completed(study) if t.user_attrs.get("evaluated")),
        "throughput": stats, "study": {"name": study.study_name, "states": S.counts(study)},
        "provenance": provenance()})
    refs = {n: (r.latency_ms, r.accuracy, r.ci95) for n, r in result.references.items()}
    pareto_plot(out / "pareto.png", [(c.latency_ms, c.accuracy) for c in points],
                [(c.latency_ms, c.accuracy, c.ci95) for c in front], cfg.target_ms, refs,
                (best.latency_ms, best.accuracy) if best else None,
                f"{setup.space}: {len(cands)} trials, {setup.tables.describe()}", result.accuracy_label)
    if best is not None:
        _write_card(best, setup, cfg, out, len(cands), result.chosen, race)
    return result


def _final(run: SearchRun, feasible: list[Candidate], front_archs: set[str],
           progress: bool) -> tuple[list[Candidate], Candidate | None, dict]:
    """The finalists (what the search could return), timed end to end on every engine against the target (those
    that straddle it timed again) and raced; the choice, confirmed by fresh rounds."""
    setup, cfg = run.setup, run.cfg
    finals = F.pick_finalists(feasible, front_archs, cfg.criterion, cfg.finalists)
    if not finals:
        return [], None, {"rule": "no feasible architecture was evaluated"}
    timer = F.CleanTimer(setup.tables, cfg.clock, progress)
    try:
        F.measure(finals, timer, cfg.target_ms)
        more, second = F.second_round(feasible, finals, cfg, run.problem.meets, front_of(cfg),
                                      lambda bias: _repaired(run, finals, bias)) if cfg.second_round else ([], {})
        if more:
            F.measure(more, timer, cfg.target_ms)
            finals = finals + more
        if run.race is not None:
            for f in finals:
                f.estimate = run.race.estimate(get_space(setup.space).validate(f.arch))

        def retime(f: Candidate) -> dict:  # fresh rounds on every engine, the chosen one's verdict decided
            return {e: timer.time(e, [f.arch], cfg.target_ms, seed=1 + f.trial, label="the choice, fresh rounds:")[0]
                    for e in timer.engines()}

        pick, why = F.choose(finals, cfg.target_ms, cfg.criterion, retime)
    finally:
        timer.close()
    why["second_round"] = second
    why["dominated_by"] = F.dominated_by(pick, finals, cfg.criterion, cfg.target_ms) if pick is not None else []
    return finals, pick, why


def _repaired(run: SearchRun, finals: list[Candidate], bias: dict[str, float]) -> list[Candidate]:
    """The first finalists, best estimates first, each made just fast enough for the tables scaled by ``bias``
    (``Problem.repair``: one choice cheaper at a time in random layers) and evaluated as the study evaluates; none
    where even the fastest architecture misses the target once corrected."""
    import random

    from ..errors import NasDeployError

    tables, problem = run.setup.tables, run.problem

    def cost(tokens) -> float:
        return F.corrected_latency(tables.by_engine("-".join(tokens)), bias)

    try:
        fixed = Problem(problem.layers, cost, problem.layer_cost, problem.target, problem.canonical_form)
    except NasDeployError:
        return []
    rng, seen, out = random.Random(run.cfg.seed), {f.arch for f in finals}, []
    for f in sorted(finals, key=lambda f: -f.score(run.cfg.criterion)):
        tokens = fixed.canonical(fixed.repair(tuple(f.arch.split("-")), rng))
        arch = "-".join(tokens)
        if arch in seen or not fixed.feasible(tokens):
            continue
        seen.add(arch)
        ev, predicted = run.setup.evaluator(tokens), tables.by_engine(arch)
        out.append(Candidate.evaluated(arch, predicted, ev.score, ev.attrs,
                                       cost=F.corrected_latency(predicted, bias)))
    return out


def _chosen_record(f: Candidate, cfg: SearchConfig) -> Chosen:
    """The chosen finalist's promise: every round it was timed in on its engine; the verdict from its fresh rounds
    where it was timed again, else from its qualifying rounds."""
    lat = f.latency
    fresh = f.retimed.get(f.engine)
    judge = fresh or f.timing.get(f.engine)
    verdict = judge.verdict(cfg.target_ms) if judge is not None else None
    return Chosen(arch=f.arch, engine=f.engine, measured_ms=f.latency_ms, predicted_ms=f.predicted_ms.get(f.engine),
                  target_ms=cfg.target_ms, confidence=cfg.latency_confidence,
                  latency=lat.as_dict() if lat is not None else None,
                  fresh=fresh.as_dict() if fresh is not None else None, verdict=verdict,
                  meets_target=verdict == "meets" if verdict is not None else None, retimed=bool(f.retimed),
                  measured_by_engine={e: f.latency_on(e).median for e in f.timing},
                  latency_by_engine={e: f.latency_on(e).as_dict() for e in f.timing},
                  predicted_by_engine=f.predicted_ms, race_top1=f.estimate.top1 if f.estimate else None,
                  race_images=f.estimate.images if f.estimate else None)


def front_of(cfg: SearchConfig) -> tuple[str, ...]:
    """The objectives a front is drawn over: accuracy and latency always, parameters when searched by them."""
    return ("accuracy", "latency") + (("params",) if "params" in cfg.objectives else ())


def resolved_front(cands: list[Candidate], criterion: str) -> list[Candidate]:
    """The architectures that no other at most as slow beats with its paired 95% interval above 0: the front of
    what the estimates can tell apart (a point-estimate front picks among ties by noise), by latency."""
    if not cands or cands[0].study_estimate is None:
        return []
    out = [c for c in cands
           if not any(o is not c and o.predicted <= c.predicted
                      and paired(o.study_estimate, c.study_estimate, criterion)[1] > 0 for o in cands)]
    return sorted({c.arch: c for c in out}.values(), key=lambda c: c.predicted)


def _paired_vs(pick: Candidate | None, cands: list[Candidate], criterion: str, archs: set[str]) -> dict:
    """Each front architecture against the chosen one, paired over the same images: (mean, 95% interval)."""
    if pick is None or pick.study_estimate is None:
        return {}
    return {c.arch: [round(v, 4) for v in paired(c.study_estimate, pick.study_estimate, criterion)]
            for c in cands if c.arch in archs and c.arch != pick.arch and c.study_estimate is not None}


def _references(setup, pick: Candidate | None) -> dict[str, Reference]:
    """Zoo models of this space family placed in the same tables (and, with a supernet, scored as its subnets,
    paired against the chosen architecture)."""
    from .. import zoo

    out: dict[str, Reference] = {}
    for name, card in zoo.cards().items():
        if card.flavour != SPACE_FLAVOUR[setup.space] or card.num_classes != 1000:
            continue
        arch = get_space(setup.space).validate(card.arch)
        engine, lat = setup.tables.best(arch)
        entry = Reference(str(arch), lat, engine)
        if setup.supernet is not None:
            e = setup.evaluator.estimate(arch)
            entry.accuracy, entry.loss, entry.ci95 = e.top1, e.loss, wilson95(e)
            if pick is not None and pick.study_estimate is not None:
                entry.paired_vs_best = [round(v, 4) for v in paired(e, pick.study_estimate,
                                                                     setup.evaluator.criterion)]
        out[name] = entry
    return out


def _write_card(best: FrontPoint, setup, cfg: SearchConfig, out: Path, trials: int, chosen: Chosen | None,
                race) -> None:
    from ..zoo import Card, save_checkpoint

    arch = get_space(setup.space).validate(best.arch)
    skips = [i for i, c in enumerate(arch) if c.skip] if setup.supernet is not None else []
    card = Card.for_setting(setup.setting, name=f"{setup.space}_searched_{cfg.target_ms:g}ms", space=setup.space,
                            flavour=SPACE_FLAVOUR[setup.space], arch=arch, stabilizers=skips,
                            description=f"searched by nasdeploy under {cfg.target_ms:g} ms on "
                                        f"{setup.tables.describe()}",
                            counts={"params": best.params, "macs": best.macs},
                            search={"target_ms": cfg.target_ms,
                                    "measured_latency_ms": chosen.measured_ms if chosen else None,
                                    "predicted_latency_ms": chosen.predicted_ms if chosen else None,
                                    "engine": best.engine, "accuracy": best.accuracy,
                                    "accuracy_kind": getattr(setup.evaluator, "label", ""), "criterion": cfg.criterion,
                                    "tables": [str(t.path) for t in setup.tables.tables.values()],
                                    "trials": trials})
    if setup.supernet is not None:
        evaluator = race or setup.evaluator  # the subnet as it was scored: BN recalibrated as in the race
        save_checkpoint(evaluator.subnet(arch), out / "best.pt", setting=setup.setting)
        card.checkpoint = {"file": "best.pt", "layout": "nasdeploy",
                           "note": "subnet inherited from the supernet, BN recalibrated; stabilizers fold on export"}
    card.write(out / "best.toml")
