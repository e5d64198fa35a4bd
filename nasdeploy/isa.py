"""The CPU's instruction set as INT8 kernels see it, and the quantization rule that follows from it.

x86 CPUs without VNNI multiply INT8 by a pair of instructions (``vpmaddubsw`` + ``vpmaddwd``) whose first step adds
two u8 x s8 products into a signed 16-bit lane, which saturates when activations and weights are both large. ONNX
Runtime's kernels and OpenVINO's both take that path on AVX2 and AVX-512 CPUs without VNNI. Both quantizers
document the cure: ONNX Runtime's ``reduce_range`` (7-bit weights) and NNCF's ``OverflowFix.ENABLE`` (half the
weight range on every convolution and matmul), at the cost of one bit of weight precision. CPUs with VNNI
(``avx512_vnni``, ``avx_vnni``, AMX) multiply-accumulate into 32 bits in one instruction and need no cure; ARM
CPUs (``sdot``) neither.

A graph is quantized for an instruction-set *class*: ``vnni`` (full 8-bit weights), ``no-vnni`` (the cure) or
``portable`` (the cure, which is right on every x86-64 CPU). ``native`` picks the class of the CPU quantizing.
Measured on a trained 28 px SCARLET network (benchmarks/README, "INT8 on CPUs without VNNI"): on an AVX2 CPU the
cure halves ONNX Runtime's typical per-image error (0.144 -> 0.067) and OpenVINO's (0.086 -> 0.040).
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache

from .errors import UsageError

# The vector and matrix extensions that INT8 and bf16 kernels use (as /proc/cpuinfo names them).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
             "amx_int8", "amx_tile", "neon", "asimddp", "sve")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
CLASSES = ("vnni", "no-vnni", "arm", "other")
# what a user may ask an INT8 graph to be quantized for
REQUESTS = ("native", "portable", "vnni", "no-vnni")


@dataclass(frozen=True)
class CpuIsa:
    """What a CPU offers INT8 and bf16 kernels."""

    machine: str  # platform.machine(): x86_64, aarch64, ...
    flags: tuple[str, ...]  # the ISA_FLAGS it has

    @property
    def int8_class(self) -> str:
        """vnni | no-vnni (x86 with 16-bit saturating INT8 products) | arm | other."""
        if self.machine.lower() in ("x86_64", "amd64", "i686", "i386", "x86"):
            return "vnni" if any(f in self.flags for f in VNNI_FLAGS) else "no-vnni"
        if self.machine.lower() in ("aarch64", "arm64"):
            return "arm"
        return "other"

    def describe(self) -> str:
        """A line for reports: 'x86_64 AVX2 FMA, no VNNI'."""
        shown = [f.upper().replace("_", "-") for f in self.flags] or ["no listed extension"]
        tail = {"vnni": "", "no-vnni": ", no VNNI"}.get(self.int8_class, "")
        return f"{self.machine} {' '.join(shown)}{tail}"

    def as_dict(self) -> dict:
        return {"machine": self.machine, "flags": list(self.flags), "int8_class": self.int8_class,
                "description": self.describe()}


def parse_flags(cpuinfo: str) -> tuple[str, ...]:
    """The ISA_FLAGS named on the first 'flags' (x86) or 'Features' (ARM) line of /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            have = set(line.split(":", 1)[1].split())
            return tuple(f for f in ISA_FLAGS if f in have)
    return ()


@lru_cache(maxsize=1)
def this_cpu() -> CpuIsa:
    try:
        with open("/proc/cpuinfo") as f:
            flags = parse_flags(f.read())
    except OSError:
        flags = ()
    return CpuIsa(platform.machine(), flags)


@dataclass(frozen=True)
class Int8Rule:
    """How an INT8 graph is quantized for an instruction-set class."""

    request: str  # what was asked: native | portable | vnni | no-vnni
    target: str  # the class it is quantized for: vnni | no-vnni | portable | arm | other
    saturation_safe: bool  # 7-bit (ONNX Runtime reduce_range) / half-range (NNCF overflow fix) weights

    def as_dict(self) -> dict:
        return {"request": self.request, "target": self.target, "saturation_safe": self.saturation_safe,
                "weights": ("7-bit range (saturation-safe on x86 CPUs without VNNI)" if self.saturation_safe
                            else "full 8-bit range")}

    def runs_well_on(self, cpu_class: str) -> bool:
        """Whether a graph quantized by this rule avoids saturation on a CPU of ``cpu_class``."""
        return self.saturation_safe or cpu_class != "no-vnni"


def int8_rule(request: str = "native", cpu: CpuIsa | None = None) -> Int8Rule:
    """The rule for ``request`` on ``cpu`` (default: this CPU)."""
    if request not in REQUESTS:
        raise UsageError(f"unknown INT8 instruction-set target '{request}': choose one of {', '.join(REQUESTS)} "
                         "(native: this CPU's; portable: safe on any x86-64)")
    if request == "native":
        cls = (cpu or this_cpu()).int8_class
        return Int8Rule(request, cls, cls == "no-vnni")
    if request == "portable":
        return Int8Rule(request, "portable", True)
    return Int8Rule(request, request, request == "no-vnni")


def mismatch(recorded: dict | None, cpu: CpuIsa | None = None) -> str | None:
    """Why an INT8 artefact calibrated and gated on the CPU ``recorded`` (an ``as_dict``) may score differently
    here, or None when this CPU is of the same INT8 class."""
    cpu = cpu or this_cpu()
    if not recorded:
        return "it records no instruction set (made by an older nasdeploy)"
    if recorded.get("int8_class") != cpu.int8_class:
        return (f"it was calibrated and gated on {recorded.get('description', recorded.get('int8_class'))}, this "
                f"CPU is {cpu.describe()}")
    return None
