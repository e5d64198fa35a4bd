"""Why does an AOTInductor package crash while loading? A tiny package compiled here, then loaded in fresh
processes, plainly and with each load option, each load's exit code (a signal where it crashed) recorded beside the
versions and tools the package was built with and the libraries its shared object needs.

    python -m benchmarks.aoti_probe --device cuda --json aoti_probe.json    # on the GPU machine (gpu_check.sh)
    python -m benchmarks.aoti_probe --device cpu --json /tmp/aoti_probe.json  # the same plumbing on the CPU

The GPU check of 2026-12-04 died with SIGSEGV inside ``torch._inductor.aoti_load_package`` on PyTorch 2.11 (CUDA
13); this is the probe that says which load crashes, and with what.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

LOADS = {"plain": {}, "device_index": {"device_index": 0}, "run_single_threaded": {"run_single_threaded": True}}

_LOAD = """
import sys, torch
path, device, kw = sys.argv[1], sys.argv[2], eval(sys.argv[3])
fn = torch._inductor.aoti_load_package(path, **kw)
x = torch.load(sys.argv[4]).to(device)
y = fn(x)
ref = torch.load(sys.argv[5])
err = float((y.float().cpu() - ref).abs().max() / ref.abs().max())
print("rel_err", err)
"""


def _run(cmd: list[str], timeout: int = 300) -> dict:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return {"rc": None, "out": "not found"}
    except subprocess.TimeoutExpired:
        return {"rc": "timeout", "out": ""}
    rc = r.returncode
    how = f"killed by signal {-rc}" if rc < 0 else f"exit {rc}"
    return {"rc": rc, "how": how, "out": (r.stdout + r.stderr).strip()[-800:]}


def tools() -> dict:
    import torch

    out = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda}
    try:
        import triton  # type: ignore[import-not-found]

        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = None
    try:
        from torch.utils.cpp_extension import CUDA_HOME

        out["CUDA_HOME"] = CUDA_HOME
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        out["CUDA_HOME"] = f"unknown ({type(e).__name__})"
    for tool, args in (("nvcc", ["--version"]), ("g++", ["--version"])):
        path = shutil.which(tool)
        out[tool] = _run([path, *args])["out"].splitlines()[-1] if path else None
    return out


def compile_package(device: str, work: Path) -> tuple[Path, Path, Path]:
    """A tiny convolutional network as an AOTInductor package for ``device``; its input and eager output."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval().to(device)
    x = torch.randn(2, 3, 28, 28, device=device)
    with torch.no_grad():
        ref = net(x).float().cpu()
        ep = torch.export.export(net, (x,))
        pkg = torch._inductor.aoti_compile_and_package(ep, package_path=str(work / "probe.pt2"))
    torch.save(x.cpu(), work / "x.pt")
    torch.save(ref, work / "ref.pt")
    return Path(pkg), work / "x.pt", work / "ref.pt"


def libraries(pkg: Path, work: Path) -> dict:
    """``ldd`` of every shared object inside the package."""
    out = {}
    with zipfile.ZipFile(pkg) as z:
        for name in z.namelist():
            if name.endswith(".so"):
                path = Path(z.extract(name, work / "unzipped"))
                out[name] = _run(["ldd", str(path)])["out"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", required=True)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="aoti-probe-"))
    result: dict = {"device": args.device, "tools": tools(), "env": {k: os.environ.get(k) for k in
                                                                     ("CUDA_HOME", "LD_LIBRARY_PATH", "CC", "CXX")}}
    try:
        pkg, x, ref = compile_package(args.device, work)
        result["compiled"] = True
        result["libraries"] = libraries(pkg, work)
        result["loads"] = {name: _run([sys.executable, "-X", "faulthandler", "-c", _LOAD, str(pkg), args.device,
                                       repr(kw), str(x), str(ref)]) for name, kw in LOADS.items()}
    except Exception as e:  # noqa: BLE001 - what failed is the finding
        result["compiled"] = False
        result["error"] = f"{type(e).__name__}: {e}"[:800]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    for name, r in (result.get("loads") or {}).items():
        print(f"load {name}: {r.get('how')} {r.get('out', '').splitlines()[-1:] }")
    if not result["compiled"]:
        print("compile failed:", result["error"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
