"""Prediction-error metrics: MAPE, max relative error, Kendall's tau-b, least-squares calibration."""
from __future__ import annotations

import math
from typing import Sequence


def mape(pred: Sequence[float], meas: Sequence[float]) -> float:
    """Mean absolute percentage error, in percent."""
    return 100.0 * sum(abs(p - m) / m for p, m in zip(pred, meas)) / len(meas)


def max_error(pred: Sequence[float], meas: Sequence[float]) -> float:
    """Largest absolute percentage error, in percent."""
    return 100.0 * max(abs(p - m) / m for p, m in zip(pred, meas))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties handled), O(n^2): fine for the few hundred points a validation has."""
    x, y = [float(v) for v in x], [float(v) for v in y]
    conc = disc = tx = ty = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx = (x[i] > x[j]) - (x[i] < x[j])
            dy = (y[i] > y[j]) - (y[i] < y[j])
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif dx == dy:
                conc += 1
            else:
                disc += 1
    denom = math.sqrt((conc + disc + tx) * (conc + disc + ty))
    return (conc - disc) / denom if denom else float("nan")


def fit_calibration(raw: Sequence[float], blocks: Sequence[int], params: Sequence[float],
                    measured: Sequence[float]) -> dict:
    """The calibration of a table from whole networks timed end to end:
    ``measured = a * raw + c * blocks + d * max(0, params - cache) + b`` by least squares.

    * ``raw``: the table's sum; ``a`` scales it.
    * ``blocks``: the searchable layers that are not skips. Each entry is a block run alone, with the runtime's fixed
      cost of a call and of reading and writing its tensors, which it does not pay inside a network: a cost per
      block, taken back per block (``c``), not by scaling the sum or by one intercept.
    * ``params``: the deployed network's parameters. A block run alone keeps its weights in the CPU's caches from
      call to call; a whole network whose weights outgrow them reads them from memory on every call, which costs
      in proportion to what does not fit (``d`` per parameter beyond ``cache``). ``cache`` is chosen among the
      measured sizes (and "never": no such term) by the least squared error.

    A term that does not vary (no skips, all networks inside the cache) is left out, ``d`` is never negative, and
    a fit whose slope ``a`` is not positive is no calibration: the sum is then only scaled (through the origin)."""
    import numpy as np

    x, k, w, y = (np.asarray(v, dtype=np.float64) for v in (raw, blocks, params, measured))
    has_k = len(set(k.tolist())) > 1
    best = None
    for cache in [None] + sorted(set(np.quantile(w, np.linspace(0.1, 0.9, 17)).tolist())):
        cols = [x] + ([k] if has_k else [])
        over = np.maximum(0.0, w - cache) if cache is not None else None
        if over is not None:
            if not over.any():
                continue
            cols.append(over)
        cols.append(np.ones_like(x))
        if len(y) <= len(cols):
            continue
        design = np.stack(cols, 1)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        if coef[0] <= 0 or (over is not None and coef[-2] < 0):
            continue
        sse = float(((design @ coef - y) ** 2).sum())
        if best is None or sse < best[0] - 1e-15:
            best = (sse, {"a": float(coef[0]), "c": float(coef[1]) if has_k else 0.0,
                          "d": float(coef[-2]) if over is not None else 0.0,
                          "cache_params": float(cache) if cache is not None else None,
                          "b": float(coef[-1]), "n": len(y),
                          "model": "a * sum + c * blocks + d * max(0, params - cache_params) + b"})
    if best is not None:
        return best[1]
    sxx = float((x * x).sum())
    return {"a": float((x * y).sum() / sxx) if sxx else 1.0, "b": 0.0, "c": 0.0, "d": 0.0, "cache_params": None,
            "n": len(y), "model": "a * sum"}


def calibrated(cal: dict | None, raw: float, blocks: int, params: float = 0.0) -> float:
    """A table sum through a calibration (None: the sum itself)."""
    if not cal:
        return raw
    over = max(0.0, params - cal["cache_params"]) if cal.get("cache_params") is not None else 0.0
    return cal["a"] * raw + cal.get("c", 0.0) * blocks + cal.get("d", 0.0) * over + cal.get("b", 0.0)


def loo_calibrated(raw: Sequence[float], blocks: Sequence[int], params: Sequence[float],
                   measured: Sequence[float]) -> list[float]:
    """Leave-one-out calibrated predictions: each architecture predicted by a fit (its cache size included) on all
    the others."""
    out = []
    for i in range(len(raw)):
        keep = [j for j in range(len(raw)) if j != i]
        cal = fit_calibration([raw[j] for j in keep], [blocks[j] for j in keep], [params[j] for j in keep],
                              [measured[j] for j in keep])
        out.append(calibrated(cal, raw[i], blocks[i], params[i]))
    return out
