"""Search spaces, the channel/stride plan and the ``Arch`` value with its text form.

An architecture is one choice per searchable layer.  Its text form is one token
per layer joined by ``-``: ``k7e3`` (kernel 7, expansion 3), ``k5e6se`` (with
squeeze-and-excitation) or ``skip``.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..errors import ArchError

# (output channels, repeats, stride of the first layer) after the 32 -> 16 separable conv.
STAGE_PLAN: tuple[tuple[int, int, int], ...] = (
    (32, 2, 2),
    (40, 4, 2),
    (80, 4, 2),
    (96, 4, 1),
    (192, 4, 2),
    (320, 1, 1),
)
STEM_CHANNELS = 32
SEPARABLE_CHANNELS = 16
HEAD_CHANNELS = 1280

_TOKEN = re.compile(r"^k(?P<k>\d+)e(?P<e>\d+)(?P<se>se)?$")


@dataclass(frozen=True, order=True)
class Choice:
    """One candidate operation: an inverted residual block or a skip."""

    kernel: int = 0
    expansion: int = 0
    se: bool = False
    skip: bool = False

    @property
    def token(self) -> str:
        if self.skip:
            return "skip"
        return f"k{self.kernel}e{self.expansion}" + ("se" if self.se else "")

    @classmethod
    def parse(cls, token: str) -> "Choice":
        t = token.strip().lower()
        if t in ("skip", "id", "identity"):
            return SKIP
        m = _TOKEN.match(t)
        if not m:
            raise ArchError(f"'{token}' is not a layer token: use kKeE (e.g. k7e3), kKeEse (e.g. k5e6se) or skip")
        return cls(kernel=int(m["k"]), expansion=int(m["e"]), se=bool(m["se"]))

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.token


SKIP = Choice(skip=True)


@dataclass(frozen=True)
class LayerSpec:
    """A searchable position: its input/output widths and stride."""

    index: int
    in_channels: int
    out_channels: int
    stride: int

    @property
    def skippable(self) -> bool:
        """A skip is only shape-preserving where stride is 1 and width is unchanged."""
        return self.stride == 1 and self.in_channels == self.out_channels


def layer_plan(stride_plan: Sequence[int] | None = None) -> tuple[LayerSpec, ...]:
    """The 19 searchable positions; ``stride_plan`` overrides the per-stage first stride."""
    strides = list(stride_plan) if stride_plan is not None else [s for _, _, s in STAGE_PLAN]
    if len(strides) != len(STAGE_PLAN):
        raise ArchError(f"a stride plan needs {len(STAGE_PLAN)} entries, got {len(strides)}")
    if any(isinstance(s, bool) or s not in (1, 2) for s in strides):
        raise ArchError(f"a stride plan takes strides of 1 or 2, got {list(strides)}")
    layers: list[LayerSpec] = []
    cin = SEPARABLE_CHANNELS
    for (cout, repeats, _), first_stride in zip(STAGE_PLAN, strides):
        for r in range(repeats):
            layers.append(LayerSpec(len(layers), cin, cout, first_stride if r == 0 else 1))
            cin = cout
    return tuple(layers)


@dataclass(frozen=True)
class Arch:
    """One choice per searchable layer.  ``str(arch)`` is the round-trippable text form."""

    choices: tuple[Choice, ...]

    @classmethod
    def parse(cls, text: str | "Arch" | Iterable[str]) -> "Arch":
        if isinstance(text, Arch):
            return text
        tokens = re.split(r"[\s,\-]+", text.strip()) if isinstance(text, str) else list(text)
        tokens = [t for t in tokens if t]
        if not tokens:
            raise ArchError("empty architecture string: give one token per layer, e.g. k7e3-k3e3-...")
        out = []
        for i, tok in enumerate(tokens):
            try:
                out.append(Choice.parse(tok))
            except ArchError as e:
                raise ArchError(f"layer {i}: {e}") from None
        return cls(tuple(out))

    def __str__(self) -> str:
        return "-".join(c.token for c in self.choices)

    def __len__(self) -> int:
        return len(self.choices)

    def __getitem__(self, i: int) -> Choice:
        return self.choices[i]

    def __iter__(self):
        return iter(self.choices)


@dataclass(frozen=True)
class SearchSpace:
    """A named set of choices per layer on the fixed plan."""

    name: str
    mb_choices: tuple[Choice, ...]
    allow_skip: bool
    layers: tuple[LayerSpec, ...]

    def choices_at(self, index: int) -> tuple[Choice, ...]:
        layer = self.layers[index]
        if self.allow_skip and layer.skippable:
            return self.mb_choices + (SKIP,)
        return self.mb_choices

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def validate(self, arch: Arch | str) -> Arch:
        arch = Arch.parse(arch)
        for i, c in enumerate(arch.choices[: self.num_layers]):
            allowed = self.choices_at(i)
            if c not in allowed:
                names = ", ".join(a.token for a in allowed)
                raise ArchError(f"layer {i} ({self.layers[i].in_channels}->{self.layers[i].out_channels}, "
                                f"stride {self.layers[i].stride}): '{c.token}' is not allowed in the {self.name} space; "
                                f"choose one of {names}")
        if len(arch) != self.num_layers:
            raise ArchError(f"{self.name} architectures have {self.num_layers} layers, got {len(arch)}")
        return arch

    def skip_runs(self) -> list[list[int]]:
        """Maximal runs of consecutive skippable positions (inside a stage, after its first layer): every
        position of a run has the same shapes, so a block costs and computes alike wherever it sits in it."""
        runs: list[list[int]] = []
        for i in range(self.num_layers):
            if self.allow_skip and self.layers[i].skippable:
                if runs and runs[-1][-1] == i - 1:
                    runs[-1].append(i)
                else:
                    runs.append([i])
        return runs

    def canonical(self, arch: Arch | str) -> Arch:
        """The one form of the network ``arch`` builds: in each run of skippable positions the blocks come first
        (in their order) and the skips last. Architectures that only move a skip inside a stage build the same
        deployed network (same blocks on the same shapes), so they have one canonical form."""
        arch = self.validate(arch)
        out = list(arch.choices)
        for run in self.skip_runs():
            blocks = [out[i] for i in run if not out[i].skip]
            for k, i in enumerate(run):
                out[i] = blocks[k] if k < len(blocks) else SKIP
        return Arch(tuple(out))

    def sample(self, rng: random.Random) -> Arch:
        return Arch(tuple(rng.choice(self.choices_at(i)) for i in range(self.num_layers)))

    def size(self) -> int:
        n = 1
        for i in range(self.num_layers):
            n *= len(self.choices_at(i))
        return n

    def with_strides(self, stride_plan: Sequence[int]) -> "SearchSpace":
        """The same space on another stride plan (small inputs such as 28x28 images)."""
        return SearchSpace(self.name, self.mb_choices, self.allow_skip, layer_plan(stride_plan))


_MB = tuple(Choice(k, e) for k in (3, 5, 7) for e in (3, 6))
_MB_SE = tuple(Choice(k, e, se) for k in (3, 5, 7) for e in (3, 6) for se in (False, True))

FAIRNAS = SearchSpace("fairnas", _MB, allow_skip=False, layers=layer_plan())
SCARLET = SearchSpace("scarlet", _MB_SE, allow_skip=True, layers=layer_plan())
SPACES = {s.name: s for s in (FAIRNAS, SCARLET)}


def get_space(name: str) -> SearchSpace:
    try:
        return SPACES[name.lower()]
    except KeyError:
        raise ArchError(f"unknown search space '{name}': choose one of {', '.join(SPACES)}") from None
