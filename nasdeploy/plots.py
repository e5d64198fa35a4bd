"""PNG plots (matplotlib, headless): latency prediction scatter, Pareto front, throughput vs batch."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .io import write_atomic


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    plt = _plt()
    out = write_atomic(path, lambda p: fig.savefig(p, dpi=120, bbox_inches="tight", format="png"))
    plt.close(fig)
    return out


def latency_scatter(path: str | Path, measured: Sequence[float], raw: Sequence[float],
                    calibrated: Sequence[float], title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(measured, raw, s=14, label="table sum (raw)", alpha=0.8)
    ax.scatter(measured, calibrated, s=14, label="calibrated (leave-one-out)", alpha=0.8)
    lo, hi = min(min(measured), min(raw)), max(max(measured), max(raw))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set_xlabel("measured end-to-end latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _yerr(points: Sequence[tuple]) -> list[list[float]] | None:
    """Asymmetric error bars from (x, y, (lo, hi)) points; None when no point carries an interval."""
    if not any(len(p) > 2 and p[2] for p in points):
        return None
    return [[p[1] - p[2][0] if len(p) > 2 and p[2] else 0.0 for p in points],
            [p[2][1] - p[1] if len(p) > 2 and p[2] else 0.0 for p in points]]


def pareto_plot(path: str | Path, points: Sequence[tuple[float, float]], front: Sequence[tuple],
                target_ms: float | None, refs: dict[str, tuple], chosen: tuple[float, float] | None,
                title: str, accuracy_label: str = "accuracy (%)") -> Path:
    """Front and reference points may carry a 95% interval as a third element, drawn as error bars."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    if points:
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=10, c="0.7", label="evaluated")
    if front:
        f = sorted(front, key=lambda p: p[0])
        ax.plot([p[0] for p in f], [p[1] for p in f], "o-", ms=4, c="tab:blue", label="Pareto front")
        err = _yerr(f)
        if err:
            ax.errorbar([p[0] for p in f], [p[1] for p in f], yerr=err, fmt="none", ecolor="tab:blue", alpha=0.5,
                        capsize=2, label="95% interval")
    if chosen:
        ax.scatter([chosen[0]], [chosen[1]], s=120, marker="*", c="tab:red", zorder=5, label="chosen")
    if target_ms is not None:
        ax.axvline(target_ms, c="tab:red", ls="--", lw=1, label=f"target {target_ms:g} ms")
    for name, (lat, acc, *ci) in refs.items():
        y = acc if acc is not None else (ax.get_ylim()[0])
        ax.scatter([lat], [y], marker="x", c="k")
        if acc is not None and ci and ci[0]:
            ax.errorbar([lat], [y], yerr=[[y - ci[0][0]], [ci[0][1] - y]], fmt="none", ecolor="k", alpha=0.4,
                        capsize=2)
        ax.annotate(name, (lat, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel(accuracy_label)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def throughput_plot(path: str | Path, series: dict[str, list[tuple[int, float]]], title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, pts in series.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch")
    ax.set_ylabel("throughput (images/s)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)
