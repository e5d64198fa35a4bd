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


def fit_linear(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least squares y = a x + b with b >= 0 and a > 0: a fixed overhead cannot be negative (a negative
    intercept would predict negative latencies for architectures faster than the ones measured), and a
    measurement that does not grow with the prediction calibrates nothing. Otherwise y = a x."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((xi - mx) ** 2 for xi in x)
    if sxx > 0:
        a = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y)) / sxx
        if my - a * mx >= 0 and a > 0:
            return a, my - a * mx
    sx2 = sum(xi * xi for xi in x)
    return (sum(xi * yi for xi, yi in zip(x, y)) / sx2 if sx2 else 1.0), 0.0


def loo_calibrated(x: Sequence[float], y: Sequence[float]) -> list[float]:
    """Leave-one-out calibrated predictions: each point predicted by a fit on all the others."""
    out = []
    for i in range(len(x)):
        xs = [v for j, v in enumerate(x) if j != i]
        ys = [v for j, v in enumerate(y) if j != i]
        a, b = fit_linear(xs, ys)
        out.append(a * x[i] + b)
    return out
