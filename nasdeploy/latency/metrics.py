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


def fit_calibration(raw: Sequence[float], blocks: Sequence[int], measured: Sequence[float]) -> dict:
    """Least squares ``measured = a * raw + c * blocks + b`` (``raw``: the table's sum; ``blocks``: the searchable
    layers that are not skips). Each entry of a table is a block run alone, with the runtime's fixed cost of a
    call and of reading and writing its tensors, which the block does not pay inside a network: that cost is per
    block, so it is taken back per block (``c``, negative where it shows), not by scaling the sum or by one intercept.
    ``blocks`` is left out where it does not vary (a space without skips), and a fit whose slope is not positive is
    no calibration: the sum is then only scaled (``a``: least squares through the origin)."""
    import numpy as np

    x, k, y = (np.asarray(v, dtype=np.float64) for v in (raw, blocks, measured))
    cols = [x] + ([k] if len(set(k.tolist())) > 1 else []) + [np.ones_like(x)]
    if len(y) > len(cols):
        w, *_ = np.linalg.lstsq(np.stack(cols, 1), y, rcond=None)
        a = float(w[0])
        if a > 0:
            c = float(w[1]) if len(cols) == 3 else 0.0
            return {"a": a, "b": float(w[-1]), "c": c, "n": len(y), "model": "a * sum + c * blocks + b"}
    sxx = float((x * x).sum())
    return {"a": float((x * y).sum() / sxx) if sxx else 1.0, "b": 0.0, "c": 0.0, "n": len(y), "model": "a * sum"}


def calibrated(cal: dict | None, raw: float, blocks: int) -> float:
    """A table sum through a calibration (None: the sum itself)."""
    if not cal:
        return raw
    return cal["a"] * raw + cal.get("c", 0.0) * blocks + cal.get("b", 0.0)


def loo_calibrated(raw: Sequence[float], blocks: Sequence[int], measured: Sequence[float]) -> list[float]:
    """Leave-one-out calibrated predictions: each architecture predicted by a fit on all the others."""
    out = []
    for i in range(len(raw)):
        keep = [j for j in range(len(raw)) if j != i]
        cal = fit_calibration([raw[j] for j in keep], [blocks[j] for j in keep], [measured[j] for j in keep])
        out.append(calibrated(cal, raw[i], blocks[i]))
    return out
