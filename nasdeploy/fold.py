"""Folding: BN into convolutions and SCARLET stabilizers into the plain network that computes the same function.

A stabilizer (1x1 conv, optionally followed by BN) is an affine map ``T(x) = A x + c``
on channels.  Walking the layers left to right, the pending map is

* composed with the next stabilizer on a skip (several skips in a row);
* absorbed into the first 1x1 convolution of a block without residual (or the head):
  ``W1 <- W1 A``, ``b1 <- W1 c + b1``;
* pushed through a residual block, since ``R(Ax + c) = A(x + G(x)) + c`` with
  ``G(x) = A^-1 F(Ax + c)``: the block's first 1x1 takes ``W1 A`` (bias ``W1 c + b1``) and its
  projection ``A^-1 W3`` (bias ``A^-1 b3``).  This needs ``A`` well conditioned; otherwise we refuse.

All arithmetic is done in float64 and cast back.  Every fold is checked numerically.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .errors import FoldError
from .nas.blocks import InvertedResidual, SkipLayer, SqueezeExcite, Stabilizer
from .nas.net import Network, conv_bn_pairs, conv_with_bias

log = logging.getLogger(__name__)

DEFAULT_MAX_CONDITION = 1e4
_KNOWN = (Network, nn.Sequential, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.Sigmoid,
          nn.Hardsigmoid, nn.Identity, nn.Dropout, nn.Linear, nn.AdaptiveAvgPool2d, InvertedResidual, SqueezeExcite,
          SkipLayer, Stabilizer)


@dataclass
class FoldReport:
    bn_folded: int
    stabilizers_folded: int
    pushed_through_residual: int
    max_condition: float
    max_abs_error_fp64: float
    max_rel_error_fp64: float
    max_abs_error_fp32: float
    max_rel_error_fp32: float
    max_rel_error_fp32_unfolded: float
    params_before: int
    params_after: int

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- BN folding

def fold_bn_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """``conv`` followed by ``bn`` (eval mode) as one biased convolution, in place (float64 arithmetic)."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w = conv.weight.double() * scale.view(-1, 1, 1, 1)
    b = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    b = (b - bn.running_mean.double()) * scale + bn.bias.double()
    conv_with_bias(conv)
    with torch.no_grad():
        conv.weight.copy_(w)  # copy_ casts to the parameter's dtype
        conv.bias.copy_(b)


@torch.no_grad()
def fold_bn(model: Network) -> int:
    """Fold every BN into its convolution in place (depthwise, grouped, biased convs included)."""
    n = 0
    for parent, conv_name, bn_name in conv_bn_pairs(model):
        bn = getattr(parent, bn_name)
        if not isinstance(bn, nn.BatchNorm2d):
            continue
        fold_bn_into(getattr(parent, conv_name), bn)
        setattr(parent, bn_name, nn.Identity())
        n += 1
    return n


# ------------------------------------------------------------ stabilizer folding

def _matrix(conv: nn.Conv2d) -> torch.Tensor:
    return conv.weight.double().flatten(1)  # (out, in) for a 1x1 conv


def _set_1x1(conv: nn.Conv2d, w: torch.Tensor, b: torch.Tensor) -> None:
    conv_with_bias(conv)
    with torch.no_grad():
        conv.weight.copy_(w.view_as(conv.weight))  # copy_ casts to the parameter's dtype
        conv.bias.copy_(b)


def _absorb_right(conv: nn.Conv2d, a: torch.Tensor, c: torch.Tensor) -> None:
    """conv(A x + c) as one 1x1 conv."""
    w, b = _matrix(conv), conv_with_bias(conv).bias.double()
    _set_1x1(conv, w @ a, w @ c + b)


@torch.no_grad()
def fold_stabilizers(model: Network, max_condition: float) -> tuple[int, int, float]:
    """Fold every stabilizer of a BN-folded ``model`` into the layers after it, in place (module docstring);
    (stabilizers folded, pushed through residual blocks, worst condition number)."""
    pending: tuple[torch.Tensor, torch.Tensor, str] | None = None  # (A, c, where it came from)
    folded = pushed = 0
    worst = 1.0
    for i, layer in enumerate(model.mb_module):
        name = f"mb_module.{i}"
        if isinstance(layer, SkipLayer):
            if layer.stabilizer is None:
                continue
            conv = layer.stabilizer.conv
            a = _matrix(conv)
            c = conv.bias.double() if conv.bias is not None else torch.zeros(a.shape[0], dtype=torch.float64)
            if pending is not None:
                a, c = a @ pending[0], a @ pending[1] + c
                origin = f"{pending[2]}..{name}"
            else:
                origin = name
            pending = (a, c, origin)
            layer.stabilizer = None
            folded += 1
            continue
        if pending is None:
            continue
        a, c, origin = pending
        _absorb_right(layer.conv1, a, c)
        if not layer.use_res_connect:
            pending = None
            continue
        cond = float(torch.linalg.cond(a))
        worst = max(worst, cond)
        if not cond < max_condition:  # also catches inf / nan
            raise FoldError(f"{name}: the stabilizer from {origin} has condition number {cond:.3g} "
                            f"(limit {max_condition:.0e}); pushing it through this residual block would lose "
                            "precision: retrain with BN after stabilizers or raise --max-condition")
        a_inv = torch.linalg.inv(a)
        w3 = _matrix(layer.conv3)
        b3 = layer.conv3.bias.double() if layer.conv3.bias is not None else torch.zeros(w3.shape[0], dtype=torch.float64)
        _set_1x1(layer.conv3, a_inv @ w3, a_inv @ b3)
        pushed += 1
    if pending is not None:
        _absorb_right(model.conv_before_pooling[0], pending[0], pending[1])
    return folded, pushed, worst


# ------------------------------------------------------------------- checks

def _check_foldable(model: nn.Module) -> None:
    if not isinstance(model, Network):
        raise FoldError(f"can only fold a nasdeploy Network, got {type(model).__name__}")
    for name, mod in model.named_modules():
        if not isinstance(mod, _KNOWN):
            raise FoldError(f"layer {name}: fold does not know module type {type(mod).__name__}")
        if mod.training:
            raise FoldError(f"layer {name or 'model'} is in training mode: call model.eval() before folding")


def _inputs(n: int, input_size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, input_size, input_size, generator=g, dtype=torch.float64)


@torch.no_grad()
def _run(model: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return copy.deepcopy(model).to(dtype)(x.to(dtype)).double()


def max_errors(ref: torch.Tensor, out: torch.Tensor) -> tuple[float, float]:
    """The largest absolute error of ``out`` against ``ref``, and that error relative to the largest |ref|."""
    abs_err = float((ref - out).abs().max())
    return abs_err, abs_err / max(float(ref.abs().max()), 1e-30)


def compare(a: nn.Module, b: nn.Module, dtype: torch.dtype, input_size: int, n: int = 4,
            seed: int = 0) -> tuple[float, float]:
    """Max absolute and relative (to max |reference|) error of b against a on random inputs."""
    x = _inputs(n, input_size, seed)
    return max_errors(_run(a, x, dtype), _run(b, x, dtype))


@dataclass
class FoldCheck:
    """The fold judged in float64 (exactness) and in float32 against float32's own rounding error."""

    abs64: float
    rel64: float
    abs32: float  # folded float32 against the unfolded float64 reference
    rel32: float
    rel32_unfolded: float  # the unfolded model's own float32 error against the same reference

    def refusal(self, rtol64: float, ratio32: float, floor32: float) -> str | None:
        limit32 = max(ratio32 * self.rel32_unfolded, floor32)
        if self.rel64 <= rtol64 and self.rel32 <= limit32:
            return None
        return (f"folded network differs from its input: relative error {self.rel64:.2e} in float64 (limit "
                f"{rtol64:.0e}), {self.rel32:.2e} in float32 where the unfolded network's own float32 error is "
                f"{self.rel32_unfolded:.2e} (limit {limit32:.1e}); please report this with the checkpoint")


def check_fold(model: nn.Module, plain64: nn.Module, plain: nn.Module, input_size: int, n: int = 4,
               seed: int = 0) -> FoldCheck:
    """Errors of the exact fold (``plain64``) and of its cast (``plain``), both against ``model`` in float64."""
    x = _inputs(n, input_size, seed)
    ref = _run(model, x, torch.float64)
    unfolded32 = _run(model, x, torch.float32)
    folded32 = _run(plain, x, torch.float32)
    return FoldCheck(*max_errors(ref, _run(plain64, x, torch.float64)), *max_errors(ref, folded32),
                     max_errors(ref, unfolded32)[1])


def fold(model: Network, *, check: bool = True, input_size: int | None = None,
         max_condition: float = DEFAULT_MAX_CONDITION, rtol64: float = 1e-10, ratio32: float = 16.0,
         floor32: float = 1e-4) -> tuple[Network, FoldReport]:
    """The plain network (no BN, no stabilizer) computing what ``model`` computes in eval mode.

    The check: in float64 the folded network must match to ``rtol64`` (the fold is exact algebra); in float32
    its error against the float64 reference may be at most ``ratio32`` times the unfolded network's own float32
    error (or ``floor32``), since folding moves rounding around but must not amplify it.
    """
    _check_foldable(model)
    dtype = next(model.parameters()).dtype
    plain64 = copy.deepcopy(model).double()
    bn = fold_bn(plain64)
    stab, pushed, worst = fold_stabilizers(plain64, max_condition)
    plain = copy.deepcopy(plain64).to(dtype).eval()
    plain.folded = True
    size = input_size or (32 if model.stride_plan else 64)
    errs = [float("nan")] * 5
    if check:
        chk = check_fold(model, plain64, plain, size)
        why = chk.refusal(rtol64, ratio32, floor32)
        if why:
            raise FoldError(why)
        errs = [chk.abs64, chk.rel64, chk.abs32, chk.rel32, chk.rel32_unfolded]
    report = FoldReport(bn, stab, pushed, worst, *errs, sum(p.numel() for p in model.parameters()),
                        sum(p.numel() for p in plain.parameters()))
    log.debug("fold: %s", report)
    return plain, report


def is_folded(model: nn.Module) -> bool:
    return not any(isinstance(m, (nn.BatchNorm2d, Stabilizer)) for m in model.modules())
