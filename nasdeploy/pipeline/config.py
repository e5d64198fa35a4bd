"""The pipeline's configuration: one section per stage (the supernet and fine-tune sections are the trainers' own
configurations), read from TOML with every value's type checked, so a bad value is refused before any stage runs."""
from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from ..errors import UsageError
from ..finetune import FinetuneConfig
from ..nas.train import TrainConfig
from ..search.config import SearchConfig

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "assets" / "demo.toml"


def _finetune_defaults() -> FinetuneConfig:
    return FinetuneConfig(steps=200, batch_size=64, lr=0.02)


def _supernet_defaults() -> TrainConfig:
    # the recipe (nasdeploy.nas.recipe): strict fairness, a third of the steps on the largest path, then inheritance
    return TrainConfig(steps=120, batch_size=32, lr=0.1, ckpt_every=25)


@dataclass
class LatencyStage:
    batch: int = 1
    repeats: int = 20
    warmup: int = 5
    validate_archs: int = 12  # architectures timed end to end per table, spread over its range (plus the fastest
    # and slowest)
    # tables measured before on this machine (any engines; each must match the run's setting): a candidate engine
    # that has one is not measured again
    tables: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class SearchStage(SearchConfig):
    """The search's section: every setting of ``nasdeploy.search.SearchConfig``, with its defaults, and what the
    pipeline decides for the search: the target as text (``latency_target``; ``target_ms`` is what the pipeline
    gives the search, the target less the headroom), the headroom, and the speed check before the search."""

    target_ms: float | None = None  # set by the pipeline, not in a configuration
    latency_target: str = "auto"  # with units, or auto: 85% of the median random architecture's latency
    # the headroom the choice keeps for the machine's speed changing after the search (the search aims at
    # target / (1 + headroom)): auto, the change measured when the search starts against the latency tables
    # (nasdeploy.search.speed); or a share (0.1: 10%; 0: none)
    latency_headroom: float | str = "auto"
    speed_archs: int = 3  # random architectures timed per engine for that measure (0: no check, the tables as they are)

    def __post_init__(self) -> None:
        from ..bench.stats import check_confidence

        if self.target_ms is not None:
            raise UsageError("search.target_ms is the pipeline's: give the target as search.latency_target, with "
                             "units (e.g. \"1.2ms\")")
        if self.device != "cpu" or self.seed != 0:
            raise UsageError("search.device and search.seed are the pipeline's: set device and seed at the top of the "
                             "configuration")
        _ = self.target  # a target without units is refused with the configuration, before any stage runs
        check_confidence(self.latency_confidence)
        h = self.latency_headroom
        if isinstance(h, str) and h != "auto" or isinstance(h, (int, float)) and not 0.0 <= h < 1.0:
            raise UsageError(f"search.latency_headroom must be auto or a share from 0 to below 1 (0.1: 10%), "
                             f"got {h!r}")

    @property
    def target(self) -> float | None:
        """The latency target in milliseconds (None: auto, chosen from the latency tables)."""
        from ..search.problem import parse_latency

        return None if self.latency_target == "auto" else parse_latency(self.latency_target)

    def search_config(self, target_ms: float, device: str, seed: int) -> SearchConfig:
        """The search's own configuration: every setting of this section, with the target the search runs under
        and the pipeline's device and seed (as the supernet and fine-tune sections take them)."""
        mine = {f.name: getattr(self, f.name) for f in fields(SearchConfig)}
        return SearchConfig(**{**mine, "target_ms": target_ms, "device": device, "seed": seed})


@dataclass
class ExportStage:
    parity_images: int = 256


@dataclass
class DeployStage:
    """Which engines compete for deployment (``auto``: the registry's candidates for the device), and the gate."""

    engines: list[str] | str = "auto"  # auto: the registry's candidates for the device
    budget: float = 0.5  # top-1 points an engine may lose against the float32 model on the test split
    calib_images: int = 256


@dataclass
class BenchStage:
    batches: list[int] = field(default_factory=lambda: [1, 16])
    repeats: int = 50
    rounds: int = 5  # interleaved rounds: the deploy stage compares engines round by round
    # CPU: every exported engine is also timed at these thread counts (ENGINE@THREADS, the same files) and competes
    # for deployment with them: which thread count pays on this CPU is measured, and what ships names it
    threads: list[int] = field(default_factory=lambda: [1])


@dataclass
class PipelineConfig:
    out: str = "runs/demo"
    space: str = "scarlet"
    data: str = "fashion-mnist"
    device: str = "auto"
    seed: int = 0
    accuracy_images: int = 4000  # of the test split
    supernet: TrainConfig = field(default_factory=_supernet_defaults)
    latency: LatencyStage = field(default_factory=LatencyStage)
    search: SearchStage = field(default_factory=SearchStage)
    finetune: FinetuneConfig = field(default_factory=_finetune_defaults)
    export: ExportStage = field(default_factory=ExportStage)
    bench: BenchStage = field(default_factory=BenchStage)
    deploy: DeployStage = field(default_factory=DeployStage)

    @classmethod
    def from_dict(cls, d: dict) -> "PipelineConfig":
        return from_table(cls, d, "config").check()

    def check(self) -> "PipelineConfig":
        """Values of the right type but out of range, refused with the configuration, named by their keys."""
        from ..nas.train import check_optimizer

        counts = {"supernet.steps": self.supernet.steps, "supernet.batch_size": self.supernet.batch_size,
                  "supernet.ckpt_every": self.supernet.ckpt_every, "latency.batch": self.latency.batch,
                  "latency.repeats": self.latency.repeats,
                  "search.population": self.search.population, "search.evaluations": self.search.evaluations,
                  "search.finalists": self.search.finalists, "search.calib_batches": self.search.calib_batches,
                  "search.eval_images": self.search.eval_images, "finetune.steps": self.finetune.steps,
                  "finetune.batch_size": self.finetune.batch_size, "finetune.ckpt_every": self.finetune.ckpt_every,
                  "bench.repeats": self.bench.repeats, "bench.rounds": self.bench.rounds,
                  "deploy.calib_images": self.deploy.calib_images, "accuracy_images": self.accuracy_images,
                  "export.parity_images": self.export.parity_images}
        for key, value in counts.items():
            if value < 1:
                raise UsageError(f"{key} must be at least 1, got {value}")
        if self.latency.validate_archs < 3:
            raise UsageError(f"latency.validate_archs must be at least 3 (to fit and check a calibration), got "
                             f"{self.latency.validate_archs}")
        if not self.bench.batches or any(b < 1 for b in self.bench.batches):
            raise UsageError(f"bench.batches must list batch sizes of at least 1, got {self.bench.batches}")
        if any(t < 1 for t in self.bench.threads):
            raise UsageError(f"bench.threads must list thread counts of at least 1 (or be [] for none), got "
                             f"{self.bench.threads}")
        if min(self.latency.warmup, self.search.race_images, self.search.speed_archs, self.deploy.budget) < 0:
            raise UsageError("latency.warmup, search.race_images, search.speed_archs and deploy.budget must be 0 or "
                             "more")
        check_optimizer(self.supernet.lr, self.supernet.weight_decay, self.supernet.label_smoothing,
                        self.supernet.momentum, where="supernet.")
        check_optimizer(self.finetune.lr, self.finetune.weight_decay, self.finetune.label_smoothing,
                        where="finetune.")
        return self

    @classmethod
    def demo(cls) -> "PipelineConfig":
        """The built-in demo (what `nasdeploy pipeline` runs without --config): nasdeploy/assets/demo.toml."""
        return cls.read(DEMO_CONFIG)

    @classmethod
    def read(cls, path: str | Path) -> "PipelineConfig":
        import tomllib

        p = Path(path)
        if not p.is_file():
            raise UsageError(f"pipeline config {p} does not exist")
        try:
            return cls.from_dict(tomllib.loads(p.read_text()))
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"{p} is not valid TOML ({e})") from None


def from_table(cls, d: dict, where: str):
    """A dataclass (a configuration section, a stage result) from a TOML or JSON table: unknown keys and values of
    the wrong type refused in one line."""
    if not isinstance(d, dict):
        raise UsageError(f"{where} must be a table of settings, got {d!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(known)
    if unknown:
        raise UsageError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    kw = {}
    for k, v in d.items():
        factory = known[k].default_factory
        default = factory() if callable(factory) else known[k].default
        if is_dataclass(default):
            kw[k] = from_table(type(default), v, f"{where}.{k}")
        else:
            kw[k] = _typed(v, hints[k], f"{where}.{k}")
    return cls(**kw)


def _typed(v, hint, where: str):
    """``v`` if it is of the (simple) type ``hint``, else a one-line refusal."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, __import__("types").UnionType) \
        else (hint,)
    for t in options:
        base = typing.get_origin(t) or t
        if t is type(None) and v is None:
            return v
        if is_dataclass(base) and isinstance(base, type):  # a typed record, from its JSON table
            if isinstance(v, base):
                return v
            if isinstance(v, dict):
                return from_table(base, v, where)
            continue
        if base is float and isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        if base is int and isinstance(v, int) and not isinstance(v, bool):
            return v
        if base is dict and isinstance(v, dict):
            inner = typing.get_args(t)
            return {k: _typed(x, inner[1], f"{where}.{k}") for k, x in v.items()} if inner else v
        if base in (str, bool) and isinstance(v, base):
            return v
        if base is list and isinstance(v, list):
            inner = typing.get_args(t)
            return [_typed(x, inner[0], f"{where}[]") for x in v] if inner else v
        if base is tuple and isinstance(v, (list, tuple)):  # tuple[X, ...]: a TOML or JSON list
            inner = typing.get_args(t)
            return tuple(_typed(x, inner[0], f"{where}[]") for x in v) if inner else tuple(v)
    names = " or ".join(getattr(typing.get_origin(t) or t, "__name__", str(t)) for t in options)
    raise UsageError(f"{where} must be {names}, got {v!r}")
