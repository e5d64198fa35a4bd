"""One study, any number of workers: Optuna's RDB storage (SQLite by default, PostgreSQL or any URL SQLAlchemy
takes for several machines), its heartbeat and retry of a dead worker's trial, and the study itself as the cache
of evaluations.

* **One budget for the study.** A trial proceeds only while fewer than ``budget`` trials numbered below it are
  complete or running; the others are pruned before any evaluation, so N workers finish exactly the budget.
* **Each architecture evaluated once.** Its per-image record is stored with its trial; a trial that proposes it
  again reuses the stored record, and waits for a trial still evaluating it.
* **A killed worker loses nothing.** Every worker beats a heartbeat while it evaluates; a trial whose heartbeat
  stops is failed by the next worker that looks and queued again (``RetryHeartbeatStaleTrialCallback``), with
  the same architecture.
* **Resumable.** A worker started on an existing study continues it to its budget.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import TrialState

from ..errors import UsageError
from .problem import Problem, Tokens
from .sampler import FeasibleEvolutionSampler, param_name

log = logging.getLogger(__name__)
# the heartbeat, its retry callback and fail_stale_trials are marked experimental since Optuna 2.8: used on purpose
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module=r"optuna(\.|$)")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module=__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)
META = "nasdeploy"  # the study user attribute holding the search's configuration
SETTINGS_WAIT = 5.0  # seconds a worker joining a study waits for its creator to write the configuration


@dataclass
class Evaluation:
    """What evaluating an architecture gives: the objectives' values and what to store with the trial."""

    score: float  # higher is better (the accuracy objective)
    attrs: dict  # JSON-able, stored as the trial's user attributes (the estimate's per-image record among them)


def open_storage(url: str | None, heartbeat: int | None = 30):
    """An RDB storage with heartbeats (a trial silent for 2 heartbeats is failed and retried), or the in-memory
    storage for ``url`` None (a single process)."""
    if url is None:
        return optuna.storages.InMemoryStorage()
    try:
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat if heartbeat else None,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
            if heartbeat else None, engine_kwargs={"pool_pre_ping": True} if url.startswith("postgres") else None)
    except ImportError:
        raise UsageError(f"the storage {url.split(':')[0]} needs its database driver: for PostgreSQL, pip install "
                         "'nasdeploy[postgresql]' (psycopg 3)") from None
    except Exception as e:  # sqlalchemy's OperationalError and friends: one line, what to check
        raise UsageError(f"cannot open the study storage {_safe(url)}: {str(e).splitlines()[0][:200]}") from None


def _safe(url: str) -> str:
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


def _poll(value: Callable[[], object], timeout: float, interval: float):
    """``value()`` as soon as it is not None, or None once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        v = value()
        if v is not None or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def create_or_load(storage, name: str, directions: list[str], meta: dict, problem: Problem, population: int,
                   seed: int, settings_wait: float = SETTINGS_WAIT,
                   sampler: "optuna.samplers.BaseSampler | None" = None) -> tuple["optuna.Study", bool]:
    """The study ``name`` (created with ``meta`` as its configuration if it does not exist) and whether this call
    created it. An existing study must have been made for the same problem (same ``meta`` keys that matter); its
    configuration is waited for ``settings_wait`` seconds (its creator may be writing it right now), and a study
    without one is refused. ``sampler``: what proposes architectures (default: the search's
    ``FeasibleEvolutionSampler``)."""
    sampler = sampler or FeasibleEvolutionSampler(problem, population, seed=seed, storage=storage)
    try:
        study = optuna.create_study(study_name=name, storage=storage, directions=directions, sampler=sampler)
        study.set_user_attr(META, meta)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        stored = study.user_attrs.get(META)
        if stored is None:
            stored = _poll(lambda: optuna.load_study(study_name=name, storage=storage).user_attrs.get(META),
                           settings_wait, 0.1)
        if stored is None:
            raise UsageError(f"study '{name}' in this storage has no nasdeploy settings after {settings_wait:g} s: it "
                             "was not made by `nasdeploy search`, or its maker stopped before writing them; give "
                             "another --study-name, or delete the study from the storage and search again")
        clash = clashes(stored, meta)
        if clash:
            raise UsageError(f"study '{name}' in this storage was made for other settings ({', '.join(clash)}): "
                             "give another --study-name, or the same settings")
        return study, False


# what a study was made on besides its settings: another value is another study
MADE_ON = ("space", "engines")


def stored_settings(meta: dict) -> dict:
    """The search's settings a study holds (``SearchConfig.settings``), from the layout of this version or of the
    one before it (settings beside the inputs, some grouped under evaluation and finalists, the budget twice)."""
    if "settings" in meta or "target_ms" not in meta:
        return dict(meta.get("settings") or {})
    old = {k: v for k, v in meta.items() if k not in ("evaluation", "finalists", "budget")}
    return {**old, **{k: v for k, v in (meta.get("evaluation") or {}).items() if k != "split"},
            **{("finalists" if k == "count" else k): v for k, v in (meta.get("finalists") or {}).items()}}


def clashes(stored: dict, meta: dict) -> list[str]:
    """The settings a stored study was made for that ``meta`` gives otherwise (SearchConfig.defining, and what
    it was made on)."""
    from .config import SearchConfig

    mine, theirs = stored_settings(meta), stored_settings(stored)
    return [k for k in MADE_ON if stored.get(k) != meta.get(k)] + \
        [k for k in SearchConfig.defining() if theirs.get(k) != mine.get(k)]


def wait_for_study(storage, name: str, timeout: float = 120.0) -> "optuna.Study":
    """The study ``name`` once another process has made it (a search-worker joins only an existing study);
    ``storage`` is a URL or a storage object. A study that does not appear within ``timeout`` seconds is an error."""
    def made():
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            return None

    study = _poll(made, timeout, 0.2)
    if study is None:
        raise UsageError(f"study '{name}' did not appear in the storage within {timeout:g} s: start `nasdeploy search "
                         f"--storage URL --study-name {name}` first")
    return study


def load(storage, name: str | None) -> "optuna.Study":
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if name is None:
        if len(names) != 1:
            raise UsageError(f"the storage holds {len(names)} studies ({', '.join(names) or 'none'}): give "
                             "--study-name")
        name = names[0]
    if name not in names:
        raise UsageError(f"no study '{name}' in this storage (it holds {', '.join(names) or 'none'})")
    return optuna.load_study(study_name=name, storage=storage)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def counts(study: "optuna.Study") -> dict[str, int]:
    out = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] += 1
    return out


def make_objective(study: "optuna.Study", problem: Problem, evaluate: Callable[[Tokens], Evaluation],
                   objectives: tuple[str, ...], budget: int, describe: Callable[[Tokens], dict] | None = None,
                   poll: float = 0.5):
    """The objective every worker runs: budget slot, feasibility, the study as cache, then evaluation."""
    me = worker_id()
    stats = {"evaluated": 0, "reused": 0}

    def objective(trial: "optuna.Trial") -> tuple[float, ...]:
        tokens = tuple(trial.suggest_categorical(param_name(i), list(c)) for i, c in enumerate(problem.layers))
        arch, cost = "-".join(tokens), problem.cost(tokens)
        trial.set_user_attr("arch", arch)
        trial.set_user_attr("cost", cost)
        trial.set_user_attr("worker", me)
        trial.set_constraint("cost", cost - problem.target)
        if not problem.feasible(tokens):  # only a trial queued from outside can be: never evaluated
            trial.set_user_attr("refused", "over the target")
            raise optuna.TrialPruned("over the target")
        if _slot(study, trial.number) >= budget:
            trial.set_user_attr("refused", "budget reached")
            raise optuna.TrialPruned("budget reached")
        for k, v in (describe(tokens) if describe else {}).items():
            trial.set_user_attr(k, v)
        stored = stored_evaluation(study, arch, trial.number, poll)
        if stored is None:
            t0 = time.perf_counter()
            result = evaluate(tokens)
            attrs, score = dict(result.attrs), result.score
            attrs["evaluated"], attrs["eval_seconds"] = True, round(time.perf_counter() - t0, 4)
            stats["evaluated"] += 1
        else:
            attrs = {k: v for k, v in stored.user_attrs.items()
                     if k not in ("worker", "evaluated", "reused_from", "eval_seconds")}
            attrs["evaluated"], attrs["reused_from"] = False, stored.number
            score = stored.user_attrs["score"]
            stats["reused"] += 1
        attrs["score"] = score
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        values = {"accuracy": score, "latency": cost, "params": float(attrs.get("params", 0))}
        return tuple(values[o] for o in objectives)

    objective.stats = stats  # type: ignore[attr-defined]
    return objective


def _slot(study: "optuna.Study", number: int) -> int:
    """Trials numbered below ``number`` that are complete or running (and not refused): the ones ahead in line."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.number < number and t.state in (TrialState.COMPLETE, TrialState.RUNNING)
               and "refused" not in t.user_attrs)


# (storage, trial id) of the trials given one heartbeat by free_stale_trials in this process
_WOKEN: set[tuple[int, int]] = set()


def free_stale_trials(study: "optuna.Study") -> None:
    """Optuna's ``fail_stale_trials`` (a trial whose worker's heartbeat stopped is failed, and queued again by the
    retry callback), and what it misses: a trial whose worker was killed after Optuna made it and before its first
    heartbeat has no heartbeat at all, and Optuna never counts such a trial stale, so it stayed RUNNING for ever and
    the last workers waited on it (seen in tests/test_workers.py's resume test). Each RUNNING trial older than the
    grace period is given one heartbeat, once: a live worker beats on, a dead one's trial goes stale a grace period
    later and is failed like the others. (``study._storage`` is what ``fail_stale_trials`` itself reads.)"""
    from datetime import datetime

    from optuna.storages import fail_stale_trials

    fail_stale_trials(study)
    storage = study._storage
    interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
    if not interval:
        return
    grace, now = 2 * interval, datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        key = (id(storage), t._trial_id)
        if key in _WOKEN or t.datetime_start is None or (now - t.datetime_start).total_seconds() <= grace:
            continue
        storage.record_heartbeat(t._trial_id)
        _WOKEN.add(key)


def stored_evaluation(study: "optuna.Study", arch: str, number: int, poll: float):
    """A completed trial of the same architecture; waits while a trial numbered below is still evaluating it, unless
    its worker died (its heartbeat stopped: the trial is failed, and this one evaluates the architecture itself;
    without that a resumed search whose sampler proposes again what the killed worker was evaluating waited for it
    for ever)."""
    while True:
        free_stale_trials(study)
        same = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("arch") == arch and t.number != number]
        done = [t for t in same if t.state == TrialState.COMPLETE and "score" in t.user_attrs]
        if done:
            return min(done, key=lambda t: t.number)
        if not any(t.state == TrialState.RUNNING and t.number < number for t in same):
            return None
        time.sleep(poll)


def work(study: "optuna.Study", objective, budget: int, poll: float = 0.5, on_trial: Callable[[], None] | None = None,
         ) -> dict:
    """Run trials until the study holds ``budget`` complete ones; waits (and takes over dead workers' trials)
    while the last ones are running elsewhere. Returns this worker's counts."""
    mine = {"trials": 0, "evaluated": 0, "reused": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    while True:
        free_stale_trials(study)  # a dead worker's trial: failed, and queued again by the retry callback
        c = counts(study)
        if c["COMPLETE"] >= budget:
            break
        if c["COMPLETE"] + c["RUNNING"] >= budget and not c["WAITING"]:
            time.sleep(poll)  # the last trials run elsewhere; one may yet die and come back
            continue
        study.optimize(objective, n_trials=1, gc_after_trial=False)
        mine["trials"] += 1
        if on_trial:
            on_trial()
    mine.update(objective.stats)
    mine["seconds"] = round(time.perf_counter() - t0, 2)
    return mine


def completed(study: "optuna.Study") -> list:
    """Complete trials that were not refused, in trial order."""
    return sorted((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if "score" in t.user_attrs), key=lambda t: t.number)
