"""Deliberate breaks: each one plants a bug that a test claims to guard against, runs that test on a copy of
the project with the bug, and reports whether the test caught it (failed). The working tree is never touched.

    .venv/bin/python tests/deliberate_breaks.py [--out tests/results/deliberate_breaks.md] [NAME ...]

A break that its test does not catch is a test that cannot fail: the script exits 1 in that case.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Break:
    name: str
    what: str  # the bug, in words
    file: str
    old: str
    new: str
    test: str  # pytest node id
    env: tuple[tuple[str, str], ...] = ()
    caught_by: tuple[int, ...] = (1,)  # pytest exit codes that mean the test caught it (1: a test failed)


BREAKS = [
    Break("verify-ignores-images", "evaluation feeds the model a blank image instead of the batch",
          "nasdeploy/evaluate.py", "out = forward(x)", "out = forward(torch.zeros_like(x))",
          "tests/test_verify.py::test_verify_top1_equals_an_independent_official_evaluation"),
    Break("ort-ignores-input", "the ONNX Runtime runner feeds zeros (a stale or ignored input)",
          "nasdeploy/backends/onnxruntime.py",
          "return torch.from_numpy(self.session.run(None, {self.input_name: x.detach().float().cpu().numpy()})[0])",
          "return torch.from_numpy(self.session.run(None, {self.input_name: 0 * x.detach().float().cpu().numpy()})[0])",
          "tests/test_verify.py::test_verify_through_onnxruntime_matches_torch"),
    Break("aoti-replays-stale-input", "the AOTInductor runner replays its first batch (a stale input buffer)",
          "nasdeploy/backends/aoti.py", "            return self.fn(x.to(self.device, self.dtype))",
          "            return self.fn(self.__dict__.setdefault('_stale', x)[: x.shape[0]].to(self.device, self.dtype))",
          "tests/test_verify.py::test_verify_through_an_aoti_package_on_the_cpu_matches_torch"),
    Break("export-leaves-temp", "a failed export no longer removes its temporary folder",
          "nasdeploy/export/api.py", "        if work.exists():\n            shutil.rmtree(work, ignore_errors=True)",
          "        pass", "tests/test_atomic.py::test_export_failing_after_its_artefacts_are_written_leaves_nothing"),
    Break("same-shard-every-rank", "every torchrun rank reads rank 0's share of each batch",
          "nasdeploy/nas/train.py", "[self.rank:: self.world]", "[0:: self.world]",
          "tests/test_distributed.py::test_torchrun_ranks_share_gradients_and_stay_identical"),
    Break("sampler-state-not-restored", "a resumed run restarts the path sampler from its seed",
          "nasdeploy/nas/paths.py",
          '        self.rng.setstate((state["version"], tuple(state["internal"]), state["gauss"]))', "        pass",
          "tests/test_train.py::test_sigkill_then_resume_equals_an_uninterrupted_run"),
    Break("fold-check-ignored", "fold() computes its check but never refuses",
          "nasdeploy/fold.py", "        if why:\n            raise FoldError(why)", "        pass",
          "tests/test_fold.py::test_fold_refuses_a_float64_error_with_its_default_limits"),
    Break("best-pt-not-recalibrated", "search saves the chosen subnet without BN recalibration",
          "nasdeploy/search/outputs.py", 'save_checkpoint(evaluator.subnet(arch), out / "best.pt"',
          'save_checkpoint(setup.supernet.extract(arch).eval(), out / "best.pt"',
          "tests/test_search.py::test_search_on_a_real_supernet_writes_the_subnet_it_scored"),
    Break("gate-always-passes", "the accuracy gate passes whatever the drop",
          "nasdeploy/gate.py", "                      drop <= budget, (round", "                      True, (round",
          "tests/test_quantize.py::test_an_engine_over_the_budget_is_refused_and_nothing_is_written"),
    Break("report-figure-off", "the report prints each candidate's top-1 0.01 points off report.json",
          "nasdeploy/pipeline/report.py", "{c.top1:.2f}", "{c.top1 + 0.01:.2f}",
          "tests/test_pipeline.py::test_tiny_pipeline_end_to_end"),
    Break("pareto-keeps-dominated", "the Pareto front keeps points dominated on one objective",
          "nasdeploy/pareto.py", "all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))",
          "all(x <= y for x, y in zip(a, b)) and all(x < y for x, y in zip(a, b))",
          "tests/test_pareto.py::test_dominance_needs_one_strict_improvement"),
    Break("int8-without-isa-rule", "INT8 graphs quantized without the instruction-set rule (full 8-bit weights "
          "everywhere, saturating on CPUs without VNNI)", "nasdeploy/quantize.py",
          "reduce_range=rule.saturation_safe", "reduce_range=False",
          "tests/test_isa.py::test_portable_graphs_keep_weights_off_the_saturating_range"),
    Break("bench-rebuilds-exported-engine", "bench rebuilds an export's engines from its model.pt instead of running "
          "the files", "nasdeploy/bench/source.py",
          'lambda e=e.name: self.export.runner(e, dev, (n, n))',
          'lambda b=b, d=d: make_runner(RunnerSpec(b, shape, dev, d), self.plain, sources=self.sources)',
          "tests/test_manifest.py::test_bench_runs_the_exported_file_not_a_rebuild"),
    Break("search-reads-test-images", "the search scores subnets on the test split",
          "nasdeploy/search/job.py", 'val = D.dataset(data, "search_val", setting)',
          'val = D.dataset(data, "test", setting)',
          "tests/test_splits.py::test_the_search_reads_no_test_image"),
    Break("ci-without-reference", "CI=true with the reference data missing (no code change)",
          "", "", "", "tests/test_pareto.py", (("CI", "true"), ("NASDEPLOY_SHARED", "/nonexistent")),
          caught_by=(4,)),  # conftest refuses the session: pytest's usage-error exit
]


def _copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)


def run(b: Break, python: str, timeout: int) -> tuple[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"nasdeploy-break-{b.name}-") as tmp:
        work = Path(tmp)
        _copy_tree(work)
        if b.file:
            p = work / b.file
            text = p.read_text()
            if text.count(b.old) != 1:
                return f"NOT APPLIED ({b.old!r} found {text.count(b.old)} times in {b.file})", 0.0
            p.write_text(text.replace(b.old, b.new))
        env = {**os.environ, "PYTHONPATH": str(work), **dict(b.env)}
        if "NASDEPLOY_SHARED" not in dict(b.env):
            env["NASDEPLOY_SHARED"] = os.environ.get("NASDEPLOY_SHARED", str(ROOT.parent / "shared"))
        t = time.perf_counter()
        try:
            r = subprocess.run([python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", b.test], cwd=work,
                               env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "TIMEOUT", time.perf_counter() - t
        dt = time.perf_counter() - t
        if r.returncode == 0:
            return "NOT CAUGHT (the test passed)", dt
        if r.returncode in b.caught_by:
            return "caught", dt
        return f"ERROR (pytest exit {r.returncode}): {r.stdout[-300:]}", dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="breaks to run (default: all)")
    ap.add_argument("--out", default=None, help="write the result table (Markdown) here")
    ap.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args()
    chosen = [b for b in BREAKS if not args.names or b.name in args.names]
    lines = ["| break | the planted bug | test | result | seconds |", "| --- | --- | --- | --- | ---: |"]
    missed = 0
    for b in chosen:
        result, dt = run(b, sys.executable, args.timeout)
        missed += result != "caught"
        lines.append(f"| {b.name} | {b.what} | `{b.test}` | {result} | {dt:.0f} |")
        print(lines[-1], flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
