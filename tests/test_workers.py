"""Several search workers on one study in a real PostgreSQL: exactly the trial budget, no architecture evaluated
twice, a worker killed mid-trial loses nothing (its trial is taken up by another after two heartbeats), and the
study's front is what one process computes from the same trials."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from nasdeploy.data import BUILTIN_SETTING
from nasdeploy.latency import LatencyTable, Settings, measure_table
from nasdeploy.search.study import wait_for_study

from .conftest import ROOT
from .helpers import beating, kill_when, wait_until

BUDGET = 8  # evaluations


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny real supernet and a latency table (FairNAS space, built-in setting)."""
    from nasdeploy.nas.train import TrainConfig, train_supernet

    d = tmp_path_factory.mktemp("workers")
    sn = train_supernet(TrainConfig(space="fairnas", steps=3, batch_size=8, ckpt_every=10, device="cpu"),
                        d / "sn", progress=False).path
    lut = d / "lut.json"
    measure_table(Settings.for_input("fairnas", "cpu", "onnxruntime", 1, "fp32", BUILTIN_SETTING, warmup=1,
                                     repeats=2, rounds=1), lut, progress=False)
    return sn, lut, f"{2.0 * LatencyTable.load(lut).fastest()[1]:.4f}ms"


def _search(inputs, storage: str, study: str, out, *extra: str) -> list[str]:
    sn, lut, target = inputs
    return [sys.executable, str(ROOT / "cli.py"), "search", "--supernet", str(sn), "--lut", str(lut),
            "--latency-target", target, "--population", "4", "--evaluations", "8", "--calib-batches", "1",
            "--eval-images", "200", "--finalists", "2", "--race-images", "200", "--race-calib-images", "64",
            "--rounds", "1", "--repeats", "3", "--latency-confidence", "0.5", "--storage", storage, "--study-name",
            study, "--heartbeat", "1",
            "--out", str(out), "--no-progress", *extra]


def _worker(storage: str, study: str) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "search-worker", "--storage", storage, "--study-name", study,
            "--heartbeat", "1", "--no-progress"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "NASDEPLOY_THREADS": "1"}


_STORAGES: dict[str, optuna.storages.BaseStorage] = {}


def _study(storage: str, name: str, wait: float = 0.0) -> optuna.Study:
    """The study, through one storage per URL (a storage opened per call would leave its connection pool behind);
    ``wait`` > 0: wait that long for a search process to make it."""
    if storage not in _STORAGES:
        _STORAGES[storage] = optuna.storages.RDBStorage(storage)
    if wait:
        return wait_for_study(_STORAGES[storage], name, wait)
    return optuna.load_study(study_name=name, storage=_STORAGES[storage])


def _evaluated_once(study: optuna.Study) -> Counter:
    done = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if "score" in t.user_attrs]
    assert len(done) == BUDGET, len(done)
    evaluated = Counter(t.user_attrs["arch"] for t in done if t.user_attrs.get("evaluated"))
    assert evaluated and max(evaluated.values()) == 1, evaluated  # no architecture evaluated twice
    for t in done:  # every reuse points at the trial that evaluated that architecture
        if not t.user_attrs["evaluated"]:
            src = study.trials[t.user_attrs["reused_from"]]
            assert src.user_attrs["arch"] == t.user_attrs["arch"] and src.user_attrs["evaluated"]
    return evaluated


def test_two_workers_share_one_study_in_postgresql(inputs, postgres_url, tmp_path):
    a = subprocess.Popen(_search(inputs, postgres_url, "two", tmp_path / "a"), env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    _study(postgres_url, "two", wait=120)  # the study exists once the first worker made it
    b = subprocess.run(_worker(postgres_url, "two"), env=_env(), capture_output=True, text=True, timeout=600)
    out_a, err_a = a.communicate(timeout=600)
    assert a.returncode == 0 and b.returncode == 0, (err_a[-2000:], b.stderr[-2000:])
    study = _study(postgres_url, "two")
    _evaluated_once(study)
    workers = Counter(t.user_attrs["worker"] for t in study.get_trials(states=(TrialState.COMPLETE,)))
    assert len(workers) == 2, workers  # both took trials
    assert all(t.user_attrs["cost"] <= float(inputs[2][:-2]) for t in study.trials if "cost" in t.user_attrs)
    assert (tmp_path / "a" / "pareto.json").exists() and "worker done" in b.stdout
    # the outputs of the study as it stands, read without running a trial: the first worker's, when it finished
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "search", "--report", "--storage", postgres_url,
                        "--study-name", "two", "--out", str(tmp_path / "r")], env=_env(), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(_study(postgres_url, "two").trials) == len(study.trials)
    import json

    a, rep = (json.loads((tmp_path / d / "pareto.json").read_text()) for d in ("a", "r"))
    assert rep["trials"] == BUDGET and {c["arch"] for c in rep["front"]} == {c["arch"] for c in a["front"]}


def test_a_worker_killed_mid_trial_loses_nothing(inputs, postgres_url, tmp_path):
    """SIGKILL while a trial is running: after two heartbeats the other worker fails it and runs it again (same
    architecture); the study completes its budget, and its front equals the one this process computes from the
    same trials' architectures, evaluated again here."""
    a = subprocess.Popen(_search(inputs, postgres_url, "kill", tmp_path / "a"), env=_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def running_trial():
        assert a.poll() is None, "the first worker ended before it ran a trial"
        try:
            running = [t for t in _study(postgres_url, "kill").get_trials(states=(TrialState.RUNNING,))
                       if t.user_attrs.get("worker", "").endswith(f":{a.pid}") and "arch" in t.user_attrs
                       and t.number >= 2]
        except KeyError:  # the study is not made yet
            return None
        return running[0] if running else None

    try:
        victim = wait_until(running_trial, 300, "the first worker running its third trial or a later one")
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait()
    b = subprocess.run(_worker(postgres_url, "kill"), env=_env(), capture_output=True, text=True, timeout=600)
    assert b.returncode == 0, b.stderr[-2000:]
    study = _study(postgres_url, "kill")
    assert study.trials[victim.number].state == TrialState.FAIL
    retried = [t for t in study.get_trials(states=(TrialState.COMPLETE,))
               if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retried) == 1 and retried[0].user_attrs["arch"] == victim.user_attrs["arch"]
    _evaluated_once(study)

    # one process, the same architectures: the same estimates and the same front
    from nasdeploy.pareto import FrontPoint, pareto_front
    from nasdeploy.search import SearchConfig, SearchInputs, setup_search

    sn, lut, target = inputs
    setup = setup_search(SearchInputs(supernet=str(sn), lut=str(lut)),
                         SearchConfig(target_ms=float(target[:-2]), calib_batches=1, eval_images=200), tmp_path, False)
    done = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if "score" in t.user_attrs]
    again = []
    for t in done:
        score = setup.evaluator(t.user_attrs["arch"].split("-")).score
        assert score == pytest.approx(t.user_attrs["score"], abs=1e-9), t.number
        again.append(FrontPoint(t.user_attrs["arch"], score, t.user_attrs["cost"], 0, 0, True, t.number))
    stored = [FrontPoint(t.user_attrs["arch"], t.user_attrs["score"], t.user_attrs["cost"], 0, 0, True, t.number)
              for t in done]
    objs = ("accuracy", "latency")
    assert {c.arch for c in pareto_front(again, objs)} == {c.arch for c in pareto_front(stored, objs)}


def test_a_resumed_study_continues_to_its_budget(inputs, tmp_path):
    """SQLite this time (the default storage): a worker stopped after some trials, then the same command again."""
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    a = subprocess.Popen(_search(inputs, storage, "resume", tmp_path / "a"), env=_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    def four_complete() -> bool:
        try:
            return len(_study(storage, "resume").get_trials(states=(TrialState.COMPLETE,))) >= 4
        except KeyError:  # the study is not made yet
            return False

    kill_when(a, four_complete, "4 complete trials", timeout=300)
    kept = {t.number: t.user_attrs["arch"] for t in _study(storage, "resume").get_trials(
        states=(TrialState.COMPLETE,))}
    assert 4 <= len(kept) < BUDGET
    r = subprocess.run(_search(inputs, storage, "resume", tmp_path / "a"), env=_env(), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    study = _study(storage, "resume")
    _evaluated_once(study)
    assert all(study.trials[n].user_attrs["arch"] == arch for n, arch in kept.items())


@pytest.mark.parametrize("url, fragment", [("postgresql://nobody@127.0.0.1:1/none", "cannot open the study storage"),
                                           ("notadb://x", "cannot open the study storage")])
def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path, url, fragment):
    r = subprocess.run(_worker(url, "x"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and fragment in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_freed(tmp_path):
    """A worker killed after Optuna made its trial and before the trial's first heartbeat leaves a RUNNING trial with
    no heartbeat, which Optuna never counts stale: the last worker waited on it for ever (seen in the resume test
    above). It is given one heartbeat once it is older than the grace period, goes stale and is failed, and its
    retry is run: the study reaches its budget. A live worker's trial, beating, is left running."""
    import threading
    import time

    from nasdeploy.search import study as S

    storage = S.open_storage(f"sqlite:///{tmp_path / 'orphan.db'}", heartbeat=1)
    study = optuna.create_study(study_name="orphan", storage=storage, directions=["maximize"])
    orphan = study.ask()  # its worker died here: no heartbeat, ever
    orphan.set_user_attr("arch", "k3e3-skip")
    live = study.ask()
    beat = beating(storage, live._trial_id)
    t0 = time.monotonic()
    while study.trials[orphan.number].state == TrialState.RUNNING and time.monotonic() - t0 < 20:
        S.free_stale_trials(study)
        time.sleep(0.2)
    assert study.trials[orphan.number].state == TrialState.FAIL, "the orphan was never freed"
    assert time.monotonic() - t0 >= 2.0  # not before its grace period and one more after its one heartbeat
    assert study.trials[live.number].state == TrialState.RUNNING  # the live worker's trial runs on
    # the whole loop: a budget of 2 with the live trial done and the orphan's retry queued: work() runs the retry
    study.tell(live, 1.0)
    beat.set()

    def objective(trial):
        trial.set_user_attr("arch", "k3e3-skip")
        trial.set_user_attr("score", 0.5)
        return 0.5

    objective.stats = {}  # what work() reads of the search's objective
    done = threading.Thread(target=lambda: S.work(study, objective, budget=2, poll=0.1), daemon=True)
    done.start()
    done.join(timeout=30)
    assert not done.is_alive() and S.counts(study)["COMPLETE"] == 2


def test_a_trial_waiting_for_a_dead_workers_evaluation_takes_it_over(tmp_path):
    """The study is a cache: a trial proposing an architecture another worker is evaluating waits for that result.
    When that worker is dead (its heartbeat stopped: killed, as a resumed search's first run was), the waiting trial
    fails the stale one and evaluates the architecture itself instead of waiting for ever."""
    import threading
    import time

    from nasdeploy.search import study as S

    storage = S.open_storage(f"sqlite:///{tmp_path / 'cache.db'}", heartbeat=1)
    study = optuna.create_study(study_name="cache", storage=storage, directions=["maximize"])
    dead = study.ask()
    dead.set_user_attr("arch", "k3e3-skip")
    storage.record_heartbeat(dead._trial_id)  # its worker beat once, then died
    live = study.ask()
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(S.stored_evaluation(study, "k3e3-skip", live.number, 0.1)),
                              daemon=True)
    t0 = time.monotonic()
    waiter.start()
    waiter.join(timeout=30)
    assert not waiter.is_alive(), "still waiting for a dead worker's trial"
    assert got == [None] and time.monotonic() - t0 >= 1.0  # it waited out the grace period first
    assert study.trials[dead.number].state == TrialState.FAIL
    # a live worker's trial (its heartbeat running) is waited for: no result while it runs
    busy = study.ask()
    busy.set_user_attr("arch", "k5e6-skip")
    beat = beating(storage, busy._trial_id)
    late = study.ask()
    waiter = threading.Thread(target=lambda: S.stored_evaluation(study, "k5e6-skip", late.number, 0.1), daemon=True)
    waiter.start()
    waiter.join(timeout=3.0)
    assert waiter.is_alive()  # still waiting: the architecture is being evaluated elsewhere
    study.tell(busy, 1.0)
    busy_done = study.trials[busy.number]
    assert busy_done.state == TrialState.COMPLETE
    beat.set()
