"""The whole search job behind `nasdeploy search`: load or measure inputs, search, write the outputs."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import UsageError
from .io import provenance, write_json
from .latency import LatencyTable, Settings, measure_table
from .net import Network
from .search import (ProxyEvaluator, SearchConfig, SearchResult, SupernetEvaluator, check_lut_matches,
                     load_eval_data, reference_points, run_search)
from .space import SMALL_INPUT_STRIDES, get_space
from .supernet import SPACE_FLAVOUR

log = logging.getLogger(__name__)


@dataclass
class SearchInputs:
    space: str | None = None
    supernet: str | None = None
    lut: str | None = None
    data: str | None = None
    device: str = "cpu"
    batch: int = 1
    dtype: str = "fp32"
    backend: str | None = None
    input_size: int | None = None


def _setting(inp: SearchInputs, cfg: SearchConfig):
    """(space name, num_classes, stride plan, input size, evaluator, supernet or None)."""
    if inp.supernet:
        from .train import load_checkpoint, supernet_from

        ck = load_checkpoint(inp.supernet)  # read once: a SCARLET supernet checkpoint is ~350 MB
        sn = supernet_from(ck, inp.supernet, cfg.device)
        if inp.space and inp.space != sn.space.name:
            raise UsageError(f"--space {inp.space} but {inp.supernet} is a {sn.space.name} supernet")
        data = inp.data or ck.get("train_config", {}).get("data", "fashion-mnist")
        size = 28 if sn.stride_plan else (inp.input_size or ck.get("train_config", {}).get("input_size", 224))
        calib, val = load_eval_data(data, cfg.calib_batches, cfg.calib_batch_size, cfg.eval_images, size)
        return sn.space.name, sn.num_classes, sn.stride_plan, size, SupernetEvaluator(sn, calib, val, cfg.device), sn
    if not cfg.accuracy_proxy:
        raise UsageError("no supernet to estimate accuracy with: train one (nasdeploy train-supernet --out "
                         "runs/supernet) and pass --supernet runs/supernet/supernet.pt, or add --accuracy-proxy to "
                         "rank by a MACs proxy")
    space = inp.space or "scarlet"
    size = inp.input_size or 224
    strides = SMALL_INPUT_STRIDES if size < 64 else None
    classes = 10 if size < 64 else 1000
    return space, classes, strides, size, ProxyEvaluator(get_space(space), classes, strides, size), None


def search(inp: SearchInputs, cfg: SearchConfig, out: str | Path, progress: bool = True) -> SearchResult:
    out = Path(out)
    space_name, classes, strides, size, evaluator, supernet = _setting(inp, cfg)
    if inp.lut:
        table = LatencyTable.load(inp.lut, space=space_name)
    else:  # measured on this machine for --device/--batch/--dtype, cached in the output folder
        backend = inp.backend or ("torch" if inp.device.startswith("cuda") else "onnxruntime")
        s = Settings(space_name, inp.device, backend, inp.batch, inp.dtype, size,
                     list(strides) if strides else None, classes)
        table = measure_table(s, out / "lut.json", progress=progress)
    check_lut_matches(table, space_name, strides, classes, size)

    def make_network(arch) -> Network:
        return Network(arch, SPACE_FLAVOUR[space_name], classes, strides)

    result = run_search(get_space(space_name), table, evaluator, cfg, out, make_network, size, progress)
    result.references = reference_points(space_name, table, evaluator if supernet is not None else None)
    write_outputs(result, table, cfg, out, space_name, classes, strides, size, evaluator, supernet, inp)
    return result


def write_outputs(result: SearchResult, table: LatencyTable, cfg: SearchConfig, out: Path, space: str, classes: int,
                  strides, size: int, evaluator, supernet, inp: SearchInputs) -> None:
    from .plots import pareto_plot
    from .zoo import Card, save_checkpoint

    write_json(out / "pareto.json", {
        "target_ms": cfg.target_ms, "objectives": list(cfg.objectives), "accuracy": result.accuracy_label,
        "accuracy_proxy": cfg.accuracy_proxy, "fastest_possible_ms": result.fastest_ms,
        "table": {"path": str(table.path), **table.setting(), "device_name": table.device_name,
                  "calibrated": bool(table.calibration)},
        "evaluation": {"calib_batches": cfg.calib_batches, "calib_batch_size": cfg.calib_batch_size,
                       "eval_images": getattr(evaluator, "images", None) or cfg.eval_images,
                       "interval": "ci95: Wilson 95% interval of each top-1 on these held-out images"},
        "front": [asdict(c) for c in result.front],
        "best": asdict(result.best) if result.best else None,
        "references": result.references, "trials": len(result.candidates), "throughput": result.throughput,
        "provenance": provenance(),
    })
    refs = {n: (r["latency_ms"], r["accuracy"], r.get("ci95")) for n, r in result.references.items()}
    pareto_plot(out / "pareto.png", [(c.latency_ms, c.accuracy) for c in result.candidates],
                [(c.latency_ms, c.accuracy, c.ci95) for c in result.front], cfg.target_ms, refs,
                (result.best.latency_ms, result.best.accuracy) if result.best else None,
                f"{space}: {len(result.candidates)} trials, {table.describe()}", result.accuracy_label)
    if result.best is None:
        return
    arch = get_space(space).validate(result.best.arch)
    skips = [i for i, c in enumerate(arch) if c.skip] if supernet is not None else []
    card = Card(name=f"{space}_searched_{cfg.target_ms:g}ms", space=space, flavour=SPACE_FLAVOUR[space], arch=arch,
                num_classes=classes, input_size=size, stride_plan=list(strides) if strides else None,
                stabilizers=skips,
                description=f"searched by nasdeploy under {cfg.target_ms:g} ms on {table.describe()}",
                counts={"params": result.best.params, "macs": result.best.macs},
                search={"target_ms": cfg.target_ms, "predicted_latency_ms": result.best.latency_ms,
                        "accuracy": result.best.accuracy, "accuracy_kind": result.accuracy_label,
                        "table": str(table.path), "supernet": str(inp.supernet) if inp.supernet else "",
                        "trials": len(result.candidates)})
    if supernet is not None:
        save_checkpoint(evaluator.subnet(arch), out / "best.pt")
        card.checkpoint = {"file": "best.pt", "layout": "nasdeploy",
                           "note": "subnet inherited from the supernet, BN recalibrated; stabilizers fold on export"}
    card.write(out / "best.toml")
