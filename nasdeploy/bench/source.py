"""What `bench` times: a model resolved from a zoo name, card or checkpoint (every engine built for this run from
its folded form) or an export folder (every engine the folder's own files, hashes checked), and the rows of one
batch: how to build each runner and what it says. ``bench.run`` times them."""
from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..backends import (Engine, Runner, RunnerSpec, Sources, backend_names, engine_reason, get_backend, make_runner,
                        parse_dtype, reference_engine, same_engine, unavailable_reason)
from ..backends.compile import CompileRunner
from ..backends.torch_eager import TorchRunner
from ..export.manifest import ExportFolder, open_export
from ..quantize import QuantOptions
from ..zoo import Resolved, resolve
from . import isolated

BASELINE = "torch-eager-fp32"
# What users compare a deployment toolkit with on the GPU: the unfolded model under plain torch.compile
# (default mode, channels_last), in the benchmarked float precision. Timed in the same run.
COMPILE_REFERENCE = "torch-compile-plain"
FLOAT_DTYPES = ("fp32", "fp16", "bf16")


@dataclass
class PlannedRow:
    """One row to time: how to build its runner, what it says; its runner once built (None: it failed)."""

    backend: str
    dtype: str
    note: str
    make: Callable[[], Runner]
    files: dict | None = None
    runner: Runner | None = None
    rounds: list = field(default_factory=list)
    out: torch.Tensor | None = None  # its output on the timed input (parity against the baseline)
    accuracy: dict | None = None
    threads: int | None = None  # the threads its engine names (None: the runtime's default)

    @property
    def engine(self) -> Engine:
        return Engine(self.backend, self.dtype, self.threads)


class Source:
    """A model to bench: its input shape, baseline, reference graph and the rows of each batch."""

    def __init__(self, spec, opt, skipped: list[dict], quantization: dict[str, dict]) -> None:
        """``spec``: a model or an export folder; ``opt``: the bench's options (``bench.run.BenchOptions``); engines
        that cannot run here go to ``skipped``, how INT8 rows were calibrated to ``quantization``."""
        self.opt = opt
        self.export = spec if isinstance(spec, ExportFolder) else open_export(spec)
        if self.export is not None:
            self.name = str(self.export.path)
            self.setting = self.export.setting
            for e in self._pairs([]):  # an altered, missing or outside file: refused before any work
                self.export.check_files(e.name)
            self.plain = self.export.plain()
            self.baseline_model, self.what = self.plain, "the export's folded model.pt"
        else:
            model = spec if isinstance(spec, Resolved) else resolve(spec)
            self.name = model.spec
            self.setting = model.setting
            self.plain = model.folded()[0]
            self.baseline_model = model.net
            self.what = "already folded input" if getattr(model.net, "folded", False) else "unfolded"
        self.pairs = self._pairs(skipped)
        self.calib = self._calibration(quantization)
        self.work = Path(tempfile.mkdtemp(prefix="nasdeploy-bench-"))
        # one set of graphs for every batch: the ONNX and INT8 graphs (quantized once) and the engines' work files
        self.sources = Sources(self.plain, self.work, (3, self.setting.size, self.setting.size), self.calib)

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def _pairs(self, skipped: list[dict]) -> list[Engine]:
        """The engines to time (an export's own, with the threads each names, else every registered one), those
        that cannot run here listed in ``skipped`` with the reason."""
        opt = self.opt
        if self.export is not None:
            pairs = [self.export.engine(name) for name in self.export.engines]
            pairs = [e for e in pairs if (opt.backends is None or e.backend in opt.backends)
                     and (opt.dtypes is None or e.dtype in opt.dtypes)]
        else:
            cuda = opt.device.startswith("cuda")
            dtypes = opt.dtypes or (["fp32", "fp16"] if cuda else ["fp32"])
            pairs = [Engine(b, d) for b in (opt.backends or backend_names()) for d in dtypes]
        live = []
        for e in pairs:
            why = engine_reason(e, opt.device)
            if why:
                skipped.append({"model": self.name, "backend": e.backend, "dtype": e.dtype, "reason": why})
            else:
                live.append(e)
        return live

    def _calibration(self, quantization: dict[str, dict]):
        if self.export is not None or not any(e.dtype == "int8" for e in self.pairs):
            return None
        from ..quantize import calibration_images

        quant = self.opt.quant or QuantOptions()
        calib = calibration_images(self.setting, self.opt.calib_data, quant)
        quantization[self.name] = {**asdict(quant), "exclude": list(quant.exclude), "calibration": calib.source,
                                       "calibration_images": calib.images}
        return calib

    def _other_threads(self, n: int, shape: tuple[int, ...]) -> list[PlannedRow]:
        """Rows of the engines that name no threads at each of ``opt.threads`` other than the runtime's default
        (CPU runtimes that set their own threads): the same files or graphs, another thread count."""
        from ..backends.base import runtime_threads

        opt, dev, out = self.opt, self.opt.device, []
        if dev.startswith("cuda"):
            return out
        for e in self.pairs:
            if e.threads is not None or not get_backend(e.backend).sets_threads or get_backend(e.backend).isolated:
                continue
            for t in dict.fromkeys(opt.threads or []):
                if t == runtime_threads():
                    continue
                if self.export is not None:
                    make = (lambda e=e.name, t=t: self.export.runner(e, dev, (n, n), threads=t))
                    rows_files, note = self.export.entry(e.name)["files"], "the export's files"
                else:
                    make = (lambda e=e, t=t: make_runner(RunnerSpec(e.backend, shape, dev, e.dtype, threads=t),
                                                         self.plain, sources=self.sources))
                    rows_files, note = None, "folded"
                out.append(PlannedRow(e.backend, e.dtype, note, make, rows_files, threads=t))
        return out

    def rows(self, n: int) -> list[PlannedRow]:
        opt, cuda = self.opt, self.opt.device.startswith("cuda")
        shape = (n, 3, self.setting.size, self.setting.size)
        base, dev = self.baseline_model, opt.device
        # runners move their module to the device and dtype in place: each gets its own copy
        rows = [PlannedRow(BASELINE, "fp32", f"{self.what}, eager, no CUDA graph",
                     lambda: TorchRunner(copy.deepcopy(base), dev, torch.float32, cuda_graph=False))]
        if opt.compile_reference if opt.compile_reference is not None else cuda:
            floats = [d for d in dict.fromkeys(e.dtype for e in self.pairs) if d in FLOAT_DTYPES] or ["fp32"]
            rows += [PlannedRow(COMPILE_REFERENCE, d, "unfolded, torch.compile default mode, channels_last",
                          lambda d=d: CompileRunner(copy.deepcopy(base), dev, parse_dtype(d), channels_last=True))
                     for d in floats]
        ref = reference_engine(dev)
        for e in self.pairs:
            b, d = e.backend, e.dtype
            alone = get_backend(b).isolated  # a native runtime that can crash: a process of its own
            if self.export is not None:
                load = (lambda e=e.name: isolated.load_export(self.export.path, e, dev, n)) if alone else \
                    (lambda e=e.name: self.export.runner(e, dev, (n, n)))
                rows.append(PlannedRow(b, d, "the export's files", load, self.export.entry(e.name)["files"],
                                       threads=e.threads))
            else:
                build = (lambda b=b, d=d: isolated.build_model(b, self.plain, shape, dev, d, opt.tf32,
                                                               self.sources)) if alone else \
                    (lambda b=b, d=d, t=e.threads: make_runner(RunnerSpec(b, shape, dev, d, tf32=opt.tf32, threads=t),
                                                               self.plain, sources=self.sources))
                rows.append(PlannedRow(b, d, "folded" + (", CUDA graph" if b == "torch" and cuda else ""), build,
                                       threads=e.threads))
        rows += self._other_threads(n, shape)
        if self.export is not None and not any(same_engine(ref, e) for e in self.pairs) and \
                not unavailable_reason(ref.backend, dev):
            rows.append(PlannedRow(ref.backend, ref.dtype, "the reference, built for this run from the export's "
                                   "model.pt", lambda: make_runner(RunnerSpec(ref.backend, shape, dev, ref.dtype),
                                                                   self.plain)))
        if cuda:
            tf32 = f", TF32 {'on' if opt.tf32 else 'off'}"
            rows = [PlannedRow(r.backend, r.dtype, r.note + (tf32 if r.dtype == "fp32" else ""), r.make, r.files,
                               threads=r.threads) for r in rows]
        return rows
