"""Multi-process supernet training through torchrun (gloo on the CPU: the code path NCCL takes on GPUs)."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import torch

from .conftest import ROOT

# Each rank trains with the product's trainer; a spy on the gradient all-reduce keeps a handle on the rank's
# supernet so that every rank can write its final parameters (the trainer itself saves on rank 0 only).
RANK_SCRIPT = """
import os, sys, torch
import nasdeploy.train as T
seen = {}
real = T._allreduce_grads
def spy(net, world):
    seen["net"], seen["calls"] = net, seen.get("calls", 0) + 1
    real(net, world)
T._allreduce_grads = spy
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
    """Two torchrun 'nodes' (c10d rendezvous, gloo) end with the weights of one process that splits every batch
    into the same two interleaved halves (--micro-batches 2, BN statistics per half as each rank has them); a run
    whose second node is killed mid-way resumes (both nodes, --resume) to the uninterrupted result, bit for bit."""
    import signal
    import time

    readme = (ROOT / "README.md").read_text()
    assert "--nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint" in readme
    procs = _nodes(tmp_path / "two", [])
    rcs = _wait(procs)
    assert rcs == [0, 0], [p.stderr.read()[-2000:] for p in procs]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "nasdeploy", "train-supernet", "--space", "fairnas", "--steps", "4",
                        "--batch-size", "16", "--micro-batches", "2", "--ckpt-every", "1", "--device", "cpu",
                        "--no-progress", "--out", str(tmp_path / "one")], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    two = torch.load(tmp_path / "two" / "supernet.pt", weights_only=False)
    one = torch.load(tmp_path / "one" / "supernet.pt", weights_only=False)
    assert two["step"] == one["step"] == 4
    for k, v in two["model"].items():
        if v.is_floating_point():
            assert torch.allclose(v, one["model"][k], rtol=1e-4, atol=1e-6), k

    cut = tmp_path / "cut"
    procs = _nodes(cut, [])
    ck = cut / "checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline and not _step_at_least(ck, 2):
        time.sleep(0.05)
    os.killpg(procs[1].pid, signal.SIGKILL)  # the second node dies: its agent and its worker
    _wait(procs[1:])
    assert procs[0].wait(timeout=300) != 0  # the surviving node stops: its peer is gone
    step = torch.load(ck, weights_only=False)["step"]
    assert 2 <= step < 4
    procs = _nodes(cut, ["--resume"])
    rcs = _wait(procs)
    assert rcs == [0, 0], [p.stderr.read()[-2000:] for p in procs]
    resumed = torch.load(cut / "supernet.pt", weights_only=False)
    assert resumed["history"] == two["history"]
    for k, v in two["model"].items():
        assert torch.equal(v, resumed["model"][k]), k


def _step_at_least(path, n: int) -> bool:
    try:
        return path.exists() and torch.load(path, weights_only=False)["step"] >= n
    except Exception:  # noqa: BLE001 - being replaced right now
        return False
