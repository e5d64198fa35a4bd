"""Multi-process supernet training through torchrun (gloo on the CPU: the code path NCCL takes on GPUs)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nasdeploy.data import BUILTIN_SETTING
from nasdeploy.nas.recipe import zero_init_residuals
from nasdeploy.nas.space import get_space
from nasdeploy.nas.supernet import Supernet

from .conftest import ROOT
from .helpers import wait_until

# Each rank trains with the product's trainer; a spy on the gradient all-reduce keeps a handle on the rank's
# supernet so that every rank can write its final parameters (the trainer itself saves on rank 0 only).
RANK_SCRIPT = """
import os, sys, torch
import nasdeploy.nas.train as T
seen = {}
real = T.allreduce_grads
def spy(net, world):
    seen["net"], seen["calls"] = net, seen.get("calls", 0) + 1
    real(net, world)
T.allreduce_grads = spy
batches = []
real_iter = T.StepBatches.__iter__
def record(self):
    for idx in real_iter(self):
        batches.append(list(idx))
        yield idx
T.StepBatches.__iter__ = record
out = sys.argv[1]
res = T.train_supernet(T.TrainConfig(space="fairnas", steps=2, batch_size=8, ckpt_every=1, device="cpu"), out,
                       progress=False)
rank = int(os.environ["RANK"])
torch.save({"params": {k: p.detach() for k, p in seen["net"].named_parameters()}, "calls": seen["calls"],
            "history": res.history, "world": int(os.environ["WORLD_SIZE"]), "batches": batches}, os.path.join(out, f"rank{rank}.pt"))
"""


def test_torchrun_ranks_share_gradients_and_stay_identical(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(script), str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [torch.load(out / f"rank{i}.pt", weights_only=False) for i in (0, 1)]
    assert all(k["world"] == 2 and k["calls"] == 2 for k in ranks)  # one all-reduce per step
    assert all(math.isfinite(h[1]) for h in ranks[0]["history"])
    # each rank trains on its own half of every batch: disjoint shards, so its own losses
    for b0, b1 in zip(ranks[0]["batches"], ranks[1]["batches"]):
        assert len(b0) == len(b1) == 4 and not set(b0) & set(b1)
    assert len(ranks[0]["batches"]) == 2
    assert ranks[0]["history"] != ranks[1]["history"]
    saved = torch.load(out / "supernet.pt", weights_only=False)
    assert saved["step"] == 2
    for name, p0 in ranks[0]["params"].items():
        # each rank saw its own half of every batch; only the shared gradients keep them identical
        assert torch.equal(p0, ranks[1]["params"][name]), name
        assert torch.equal(p0, saved["model"][name]), name


@pytest.mark.extended  # the rank test runs the same trainer under torchrun --standalone
def test_the_readmes_torchrun_command_runs(tmp_path):
    """README: `torchrun --nproc-per-node 8 -m nasdeploy train-supernet ...`, here with 2 processes on the CPU."""
    readme = (ROOT / "README.md").read_text()
    assert "torchrun --nproc-per-node 8 -m nasdeploy train-supernet" in readme
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "nasdeploy", "train-supernet", "--space", "fairnas", "--steps", "2", "--batch-size", "8",
                        "--device", "cpu", "--no-progress", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    saved = torch.load(tmp_path / "run" / "supernet.pt", weights_only=False)
    assert saved["step"] == 2 and saved["train_config"]["device"] == "cpu"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nodes(out, extra: list[str], steps: int = 4) -> list[subprocess.Popen]:
    """The README's multi-node command, two 'nodes' of one process each on this machine (c10d rendezvous, gloo)."""
    port = _free_port()
    rid = f"job{os.getpid()}-{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", rid,
           "-m", "nasdeploy", "train-supernet", "--space", "fairnas", "--steps", str(steps), "--batch-size", "16",
           "--ckpt-every", "1", "--device", "cpu", "--no-progress", "--out", str(out), *extra]
    return [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True) for _ in range(2)]


def _wait(procs: list[subprocess.Popen], timeout: float = 300) -> list[int]:
    return [p.wait(timeout=timeout) for p in procs]


def test_two_nodes_train_as_one_process_would_and_resume_after_a_node_dies(tmp_path):
    """Two torchrun 'nodes' (c10d rendezvous, gloo) take the step that one process takes when it splits the batch
    into the same two interleaved halves (--micro-batches 2, BN statistics per half as each rank has them); a run
    whose second node is killed mid-way (the job then ended) resumes on both nodes (--resume) from its last
    checkpoint to the end.

    The comparison with one process is made on one (fair) step: a small network on 28 px images with batches of 8
    amplifies the order of floating-point sums step after step (the same one-process run with 2 threads instead of
    1 moves the stem's weights by 4e-3 after 4 steps), so later steps would compare summation orders, not ranks."""
    readme = (ROOT / "README.md").read_text()
    assert "--nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint" in readme
    procs = _nodes(tmp_path / "two1", [], steps=1)
    rcs = _wait(procs)
    assert rcs == [0, 0], [p.stderr.read()[-2000:] for p in procs]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "nasdeploy", "train-supernet", "--space", "fairnas", "--steps", "1",
                        "--batch-size", "16", "--micro-batches", "2", "--ckpt-every", "1", "--device", "cpu",
                        "--no-progress", "--out", str(tmp_path / "one")], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    two = torch.load(tmp_path / "two1" / "supernet.pt", weights_only=False)
    one = torch.load(tmp_path / "one" / "supernet.pt", weights_only=False)
    torch.manual_seed(0)  # the trainer's initial weights (seed 0)
    net = Supernet(get_space("fairnas"), 10, BUILTIN_SETTING.stride_plan)
    zero_init_residuals(net)
    start = net.state_dict()
    assert two["step"] == one["step"] == 1
    moved = 0
    for k, _ in net.named_parameters():
        assert torch.allclose(two["model"][k], one["model"][k], rtol=1e-4, atol=1e-6), k
        moved += not torch.equal(two["model"][k], start[k])
    assert moved > 100  # the step trained every choice block (FairNAS), not only the parent path

    cut = tmp_path / "cut"
    procs = _nodes(cut, [], steps=4)
    ck = cut / "checkpoint.pt"
    try:
        wait_until(lambda: _step_at_least(ck, 1), 300, "the two-node run's first checkpoint")
    except BaseException:
        for p in procs:
            _kill_node(p)
        raise
    _kill_node(procs[1])  # the second node dies: its agent and its worker
    # The surviving node may wait on a rendezvous store the dead node hosted (torchrun's store timeout is long):
    # a cluster scheduler ends such a job, as this does.
    try:
        procs[0].wait(timeout=10)
    except subprocess.TimeoutExpired:
        _kill_node(procs[0])
    kept = torch.load(ck, weights_only=False)
    assert 1 <= kept["step"] < 4
    procs = _nodes(cut, ["--resume"], steps=4)
    rcs = _wait(procs)
    assert rcs == [0, 0], [p.stderr.read()[-2000:] for p in procs]
    resumed = torch.load(cut / "supernet.pt", weights_only=False)
    # it continued from the checkpoint (not from scratch) to the end; that a resumed run equals the uninterrupted
    # one bit for bit is tested in one process (tests/test_supernet.py, tests/test_recipe.py)
    assert resumed["step"] == 4 and resumed["history"][:kept["step"]] == kept["history"]
    assert [h[0] for h in resumed["history"]] == [1, 2, 3, 4]


def _kill_node(agent: subprocess.Popen) -> None:
    """SIGKILL a torchrun agent and every process under it (its workers run in sessions of their own)."""
    import signal

    def tree(pid: int) -> list[int]:
        kids = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                kids += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return [pid] + [d for k in kids for d in tree(k)]

    for pid in tree(agent.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    agent.wait()


def _step_at_least(path, n: int) -> bool:
    try:
        return path.exists() and torch.load(path, weights_only=False)["step"] >= n
    except Exception:  # noqa: BLE001 - being replaced right now
        return False
