"""Helpers for tests: random BN parameters and stabilizers, with BN statistics estimated on random data so that
signals propagate (with untrained statistics the activations vanish and every check would pass trivially); the one
wait every polling test uses (``wait_until``) and the kill of a run mid-way (``kill_when``)."""
from __future__ import annotations

import random
import signal
import subprocess
import time
from typing import Callable, TypeVar

import torch
from torch import nn

from nasdeploy.evaluate import recalibrate_bn
from nasdeploy.nas.blocks import Stabilizer


def randomize(model: nn.Module, seed: int = 0, stab_noise: float = 0.3, size: int | None = None) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
            elif isinstance(m, Stabilizer):
                c = m.conv.in_channels
                w = torch.eye(c) + stab_noise * torch.randn(c, c, generator=g) / c ** 0.5
                m.conv.weight.copy_(w.view(c, c, 1, 1))
    size = size or (28 if getattr(model, "stride_plan", None) else 64)
    batches = [(torch.randn(8, 3, size, size, generator=g).to(dtype),) for _ in range(3)]
    if hasattr(model, "layers"):  # a supernet: visit every candidate along random paths
        rng = random.Random(seed)
        paths = [[rng.randrange(len(l.candidates)) for l in model.layers] for _ in range(40)]
        it = iter(paths)
        recalibrate_bn(lambda x: [model(x, p) for p in [next(it) for _ in range(13)]], model, batches)
    else:
        recalibrate_bn(model, model, batches)
    return model.eval()


def small_net(seed: int) -> nn.Module:
    """A random SCARLET network for 28 px images, 10 classes, with weights and BN statistics of spread (a randomly
    initialised network's activations shrink to ~1e-10 before its classifier: every input would give the bias)."""
    from nasdeploy.data import SMALL_INPUT_STRIDES
    from nasdeploy.nas.net import Network
    from nasdeploy.nas.space import get_space

    arch = get_space("scarlet").sample(random.Random(seed))
    return randomize(Network(arch, "scarlet", 10, SMALL_INPUT_STRIDES), seed)


def spread(y: torch.Tensor) -> float:
    """How much outputs vary across the inputs of a batch, relative to their size."""
    return float((y - y.mean(0)).abs().max() / y.abs().max())


def assert_same_training(ref_path, cut_path) -> None:
    """Two supernet checkpoints hold the same loss history and bit-identical weights (resume == uninterrupted)."""
    from nasdeploy.nas.supernet_checkpoint import load_checkpoint

    a, b = load_checkpoint(ref_path), load_checkpoint(cut_path)
    assert a["step"] == b["step"] and a["history"] == b["history"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """The first truthy value of ``condition()``, polled every ``interval`` seconds; a TimeoutError naming ``what``
    once ``timeout`` seconds have passed without one."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}: it did not happen")
        time.sleep(interval)


def kill_when(proc: subprocess.Popen, ready: Callable[[], object], what: str, timeout: float = 600.0) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds (a run killed mid-way on purpose); a failure if the run ended
    first, or the wait timed out (the process is killed either way)."""
    try:
        wait_until(lambda: ready() or proc.poll() is not None, timeout, what)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert ready(), f"the run ended before {what}"


def sgd_with_schedule(net: nn.Module) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """An optimizer with momentum and a schedule: state a training checkpoint must carry."""
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))


def beating(storage, trial_id: int, every: float = 0.2):
    """A live worker's heartbeat for ``trial_id`` in a thread of its own, until the returned event is set."""
    import threading

    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            storage.record_heartbeat(trial_id)
            time.sleep(every)

    threading.Thread(target=beat, daemon=True).start()
    return stop
