"""The pipeline's final report: Markdown and JSON, with the Pareto and bench plots beside it."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from .io import write_json, write_text


def _f(v, nd=3) -> str:
    return "-" if v is None else (f"{v:,.{nd}f}" if isinstance(v, float) else str(v))


def write_report(out: Path, cfg, results: dict, prov: dict) -> Path:
    sn, lat, se, ft, ex, acc, be, dp = (results.get(k, {}) for k in ("supernet", "latency", "search", "finetune",
                                                                       "export", "accuracy", "bench", "deploy"))
    env = be.get("environment", {})
    L: list[str] = [
        "# nasdeploy pipeline report", "",
        f"- date: {prov['written']}", f"- machine: {env.get('device_name', prov.get('cpu'))}",
        f"- command: `{prov['command']}`", f"- nasdeploy {prov['nasdeploy']}, torch {prov['torch']}, "
        f"onnxruntime {env.get('onnxruntime')}, openvino {env.get('openvino')}",
        f"- CPU extensions: {', '.join(env.get('cpu_isa') or []) or '-'}",
        f"- space: {cfg.space}, data: {cfg.data}, device: {env.get('device')}",
        "", "## Stages", "", "| stage | status | seconds | figures |", "| --- | --- | ---: | --- |",
    ]
    val = lat.get("validation", {})
    best = se.get("best", {})
    par = (ex.get("parity") or [{}])[0]
    rows = {
        "supernet": f"{sn.get('steps')} steps ({sn.get('sampler')}), loss {_f(sn.get('loss_first'))} -> "
                    f"{_f(sn.get('loss_last'))}",
        "latency": f"{lat.get('entries')} entries ({lat.get('setting')}); validation on {val.get('n')} archs: MAPE "
                   f"{_f(val.get('raw', {}).get('mape_pct'), 1)}% raw / "
                   f"{_f(val.get('calibrated', {}).get('mape_pct'), 1)}% calibrated, "
                   f"tau {_f(val.get('raw', {}).get('kendall_tau'), 2)}",
        "search": f"target {se.get('target_ms')} ms (fastest possible {_f(se.get('fastest_ms'))} ms), "
                  f"{se.get('trials')} trials, chosen {_f(best.get('latency_ms'))} ms at "
                  f"{_acc(best)}% supernet top-1",
        "finetune": f"the chosen architecture alone, {ft.get('steps')} steps of {ft.get('batch_size')} from its "
                    "inherited weights",
        "export": f"folded ({(ex.get('fold') or {}).get('stabilizers_folded')} stabilizers, "
                  f"{(ex.get('fold') or {}).get('bn_folded')} BN); {par.get('backend')} parity: max rel. error "
                  f"{(par.get('real') or {}).get('max_rel', float('nan')):.1e}, top-1 agreement {_f(par.get('top1_agreement'), 2)}%",
        "accuracy": f"top-1 on {acc.get('images')} held-out images: PyTorch float32 "
                    f"{_f(acc.get('torch_folded', {}).get('top1'), 2)}%, "
                    + ", ".join(f"{k} {_f(v['top1'], 2)}%" for k, v in (acc.get("engines") or {}).items())
                    + f" (supernet estimate before fine-tuning: {_acc(best)}%, chance 10%)",
        "bench": ", ".join(f"{r['backend']} {r['dtype']} b{r['batch']}: {r['throughput']:,.0f} img/s "
                           f"({r['speedup']:.2f}x)" for r in be.get("rows", [])),
        "deploy": f"{dp.get('engine')} at batch {dp.get('batch')}: "
                  f"{_f(dp.get('vs_onnxruntime'), 2)}x ONNX Runtime fp32{_established(dp)}, within the "
                  f"{dp.get('budget')}-point budget",
    }
    for k, text in rows.items():
        r = results.get(k, {})
        L.append(f"| {k} | {r.get('status', '-')} | {_f(r.get('seconds'), 1)} | {text} |")
    L += ["", "## Searched architecture against the zoo at the same latency", "",
          f"Latency predicted by the calibrated table of this machine; accuracy is the supernet's estimate "
          f"(BN recalibrated, {cfg.search.eval_images} held-out images) with its 95% interval, the same estimate for "
          "every row. A difference whose intervals overlap is not established, and is called so.", "",
          "| model | architecture | predicted latency (ms) | supernet top-1 (%) [95% interval] | searched vs this |",
          "| --- | --- | ---: | ---: | --- |",
          f"| **searched** | `{best.get('arch')}` | {_f(best.get('latency_ms'))} | {_acc(best)} | |"]
    for name, ref in (se.get("references") or {}).items():
        L.append(f"| {name} (architecture) | `{ref['arch']}` | {_f(ref['latency_ms'])} | {_acc(ref)} | "
                 f"{verdict(best, ref)} |")
    L += ["", "## Pareto front", "", "| architecture | predicted latency (ms) | supernet top-1 (%) [95% interval] | "
          "params |", "| --- | ---: | ---: | ---: |"]
    for c in se.get("front", []):
        L.append(f"| `{c['arch']}` | {_f(c['latency_ms'])} | {_acc(c)} | {c['params']:,} |")
    L += ["", "![Pareto front](search/pareto.png)", "", "## Parity of the exported artefacts (vs PyTorch float32)", "",
          "| backend | dtype | max abs | max rel | median abs | top-1 agreement | images |",
          "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for p in ex.get("parity", []):
        L.append(f"| {p['backend']} | {p['dtype']} | {p['real']['max_abs']:.2e} | {p['real']['max_rel']:.2e} | "
                 f"{p['real']['median_abs']:.2e} | {p['top1_agreement']:.2f}% | {p['images']} |")
    L += ["", f"## Deployment candidates (batch {dp.get('batch')}, same bench run; accuracy on "
          f"{acc.get('images')} held-out images)", "",
          f"Every exported engine with its speed and accuracy side by side; the reference is ONNX Runtime fp32. The "
          f"gate allows a top-1 drop of {dp.get('budget')} points against the float32 model (decided on the estimate; "
          f"the paired 95% interval beside it says how precisely {acc.get('images')} images measure it); the fastest "
          f"engine that passes and was faster than the reference in every bench round (round by round) is deployed, "
          f"else the reference. The latency table the search used was measured on "
          f"{dp.get('latency_table_engine')}.", "",
          "| engine | median ms | vs ONNX Runtime fp32 | top-1 (%) [95% interval] | drop (points) [95% interval] | gate | "
          "deployed |",
          "| --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for c in dp.get("candidates", []):
        ci = c["top1_ci95"]
        g = c["gate"]
        dci = g.get("drop_ci95") or (float("nan"), float("nan"))
        L.append(f"| {c['engine']} | {_f(c['median_ms'])} | {_f(c['vs_onnxruntime'], 2)}x | {c['top1']:.2f} "
                 f"[{ci[0]:.1f}, {ci[1]:.1f}] | {g['drop']:.2f} [{dci[0]:.2f}, {dci[1]:.2f}] | "
                 f"{'pass' if g['passed'] else 'fail'} | {'**yes**' if c['engine'] == dp.get('engine') else ''} |")
    for s in ex.get("skipped", []):
        L.append(f"\nnot a candidate here: {s['engine']}: {s['reason']}")
    L += ["", "## Speed (same run; speed-up over the unfolded model in PyTorch eager fp32)", "",
          "| backend | dtype | batch | images/s | median ms | p99 ms | speed-up |",
          "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in be.get("rows", []):
        L.append(f"| {r['backend']} | {r['dtype']} | {r['batch']} | {r['throughput']:,.1f} | "
                 f"{r['latency']['median']:.3f} | {r['latency']['p99']:.3f} | {r['speedup']:.2f}x |")
    for s in be.get("skipped", []):
        L.append(f"\nskipped {s.get('backend')}: {s['reason']}")
    L += ["", "![throughput](bench.png)", "", "## Artefacts", "",
          f"- supernet: `{sn.get('supernet')}`", f"- latency table: `{lat.get('lut')}` (validation plot "
          "`lut_validation.png`)", f"- search: `{out / 'search'}` (pareto.json, pareto.png, best.toml, best.pt, "
          "search.db)", f"- export: `{ex.get('out')}` ({', '.join(dict.fromkeys((ex.get('artefacts') or {}).values()))}, "
          "parity.json, card.toml)", f"- deployed engine: {dp.get('engine')} (`{dp.get('artefact')}`)",
          f"- bench: `{be.get('bench_json')}`, `bench.png`", ""]
    write_json(out / "report.json", {"config": asdict(cfg), "provenance": prov, "stages": results})
    return write_text(out / "report.md", "\n".join(L) + "\n")


def _established(dp: dict) -> str:
    e = dp.get("faster_in_every_round")
    if e is None:
        return ""
    if e:
        if dp.get("fastest") != dp.get("engine"):
            return (f" (faster in every bench round; {dp.get('fastest')} had the higher median but was not faster "
                    "in every round)")
        return " (faster in every bench round)"
    return (f"; {dp.get('fastest')} measured faster, but no candidate was faster in every bench round: not "
            "established, so the reference ships")


def _acc(c: dict) -> str:
    """A top-1 estimate with its 95% interval, where it has one."""
    ci = c.get("ci95")
    text = _f(c.get("accuracy"), 2)
    return f"{text} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else text


def verdict(searched: dict, ref: dict) -> str:
    """How the searched architecture's estimate compares with a reference's, in words the intervals allow."""
    a, b = searched.get("ci95"), ref.get("ci95")
    if a is None or b is None or searched.get("accuracy") is None or ref.get("accuracy") is None:
        return "no interval: not compared"
    if a[0] > b[1]:
        return "higher (intervals disjoint)"
    if a[1] < b[0]:
        return "lower (intervals disjoint)"
    return "not distinguishable (intervals overlap)"
