"""The latency lookup table as data: entries per (layer, choice), stem and head; predictor and calibration."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.base import Engine
from ..errors import ArtifactError
from ..io import write_json
from . import metrics
from ..nas.space import Arch, get_space

FORMAT = "nasdeploy-latency-table"
FORMAT_VERSION = 1
# A table is valid for exactly this measurement setting.
SETTING_KEYS = ("space", "device", "backend", "batch", "dtype", "input_size", "stride_plan", "num_classes", "threads")


def blocks(arch: Arch) -> int:
    """The searchable layers of ``arch`` that are blocks, not skips (a calibration's per-block term)."""
    return sum(not c.skip for c in arch)


@dataclass
class LatencyTable:
    space: str
    device: str
    backend: str
    batch: int
    dtype: str
    input_size: int
    stride_plan: list[int] | None
    num_classes: int
    threads: int | None = None  # the CPU threads its engine names (None: the runtime's default)
    stem: dict | None = None  # Stats as dict (ms)
    head: dict | None = None
    layers: list[dict[str, dict]] = field(default_factory=list)  # per layer: token -> Stats dict
    calibration: dict | None = None  # {"a": .., "b": .., "n": ..}
    device_name: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        if not self.layers:
            self.layers = [{} for _ in range(get_space(self.space).num_layers)]

    # ---------------------------------------------------------------- state
    def setting(self) -> dict:
        return {k: getattr(self, k) for k in SETTING_KEYS}

    @property
    def complete(self) -> bool:
        sp = get_space(self.space)
        return self.stem is not None and self.head is not None and all(
            all(c.token in self.layers[i] for c in sp.choices_at(i)) for i in range(sp.num_layers))

    def entries(self) -> int:
        return (self.stem is not None) + (self.head is not None) + sum(len(l) for l in self.layers)

    # -------------------------------------------------------------- predict
    def raw(self, arch: Arch | str) -> float:
        """Sum of the entries' medians (ms)."""
        arch = get_space(self.space).validate(arch)
        if not self.complete:
            raise ArtifactError(f"latency table {self.path or ''} is incomplete: rerun the same command to finish it")
        return self.stem["median"] + self.head["median"] + sum(
            self.layers[i][c.token]["median"] for i, c in enumerate(arch))

    def breakdown(self, arch: Arch | str) -> list[tuple[str, float]]:
        """``arch`` entry by entry as this table timed it (ms, raw medians): ("stem", ...), ("1 CHOICE", ...) per
        layer, ("head", ...)."""
        arch = get_space(self.space).validate(arch)
        if not self.complete:
            raise ArtifactError(f"latency table {self.path or ''} is incomplete: rerun the same command to finish it")
        return [("stem", self.stem["median"])] + [(f"{i + 1} {c.token}", self.layers[i][c.token]["median"])
                                                  for i, c in enumerate(arch)] + [("head", self.head["median"])]

    def predict(self, arch: Arch | str, calibrated: bool = True) -> float:
        """The table's latency for ``arch`` (ms): the sum of its entries, through the calibration fitted on whole
        networks timed end to end where there is one (``metrics.fit_calibration``)."""
        arch = get_space(self.space).validate(arch)
        if not (calibrated and self.calibration):
            return self.raw(arch)
        return metrics.calibrated(self.calibration, self.raw(arch), blocks(arch), self.params(arch))

    def params(self, arch: Arch | str) -> int:
        """The deployed network's parameters: the sum of its entries' sizes (recorded with each entry; worked out
        from the blocks for a table measured before sizes were recorded)."""
        arch = get_space(self.space).validate(arch)
        return self._size("stem", None) + self._size("head", None) + sum(
            self._size(i, c.token) for i, c in enumerate(arch))

    def _size(self, layer, token: str | None) -> int:
        entry = getattr(self, layer) if layer in ("stem", "head") else self.layers[layer][token]
        if "params" not in entry:
            from .blocks import entry_params

            entry["params"] = entry_params(self.space, layer, token or "", self.stride_plan, self.num_classes)
        return int(entry["params"])

    def layer_share(self, index: int, token: str, calibrated: bool = True) -> float:
        """A choice's own share of the prediction, for ordering the choices of a layer: its entry and its per-block
        term, and its size at the memory term's rate (what it adds once the network outgrows the caches)."""
        cal = self.calibration if calibrated and self.calibration else {"a": 1.0, "c": 0.0}
        return (cal["a"] * self.layers[index][token]["median"] + cal.get("c", 0.0) * (token != "skip")
                + (cal.get("d") or 0.0) * self._size(index, token))

    def fastest(self, calibrated: bool = True) -> tuple[Arch, float]:
        """The architecture with the lowest predicted latency (per-layer minimum; the predictor is additive)."""
        sp = get_space(self.space)
        arch = Arch(tuple(min(sp.choices_at(i), key=lambda c: self.layer_share(i, c.token, calibrated))
                          for i in range(sp.num_layers)))
        return arch, self.predict(arch, calibrated)

    def slowest(self) -> Arch:
        sp = get_space(self.space)
        return Arch(tuple(max(sp.choices_at(i), key=lambda c: self.layers[i][c.token]["median"])
                          for i in range(sp.num_layers)))

    # ------------------------------------------------------------------- io
    def to_dict(self) -> dict:
        d = {"format": FORMAT, "format_version": FORMAT_VERSION, **self.setting(), "device_name": self.device_name,
             "complete": self.complete, "stem": self.stem, "head": self.head,
             "layers": self.layers, "calibration": self.calibration, "provenance": self.provenance}
        return d

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path or self.path)
        write_json(path, self.to_dict())
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path, space: str | None = None) -> "LatencyTable":
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"latency table {path} does not exist: measure it with `nasdeploy latency-table`")
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ArtifactError(f"latency table {path} is not valid JSON ({e.msg if hasattr(e, 'msg') else e}): "
                                "is it truncated? measure it again") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ArtifactError(f"{path} is not a nasdeploy latency table")
        if d.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"{path}: latency table format {d.get('format_version')} is not {FORMAT_VERSION}")
        try:
            t = cls(**{k: d[k] for k in SETTING_KEYS if k != "threads"}, threads=d.get("threads"), stem=d["stem"], head=d["head"], layers=d["layers"],
                    calibration=d.get("calibration"), device_name=d.get("device_name", ""),
                    provenance=d.get("provenance", {}), path=path)
        except (KeyError, TypeError) as e:
            raise ArtifactError(f"latency table {path} lacks {e}: is it truncated?") from None
        if not isinstance(t.layers, list) or len(t.layers) != get_space(t.space).num_layers:
            n = len(t.layers) if isinstance(t.layers, list) else "no list of"
            raise ArtifactError(f"latency table {path} has {n} layers, the {t.space} space has "
                                f"{get_space(t.space).num_layers}")
        why = entries_problem(t)
        if why:
            raise ArtifactError(f"latency table {path}: {why}; measure the table again")
        if space is not None and t.space != space:
            raise ArtifactError(f"latency table {path} was measured for the {t.space} space, not {space}: "
                                f"measure one with `nasdeploy latency-table --space {space}`")
        return t

    def describe(self) -> str:
        threads = f" / {self.threads} thread(s)" if self.threads else ""
        return (f"{self.space} / {self.device_name or self.device} / {self.backend} / batch {self.batch} / "
                f"{self.dtype}{threads} / {self.input_size}px")

    @property
    def engine(self) -> str:
        """The engine it was measured for: BACKEND:PRECISION, with @THREADS where it names its threads."""
        return Engine(self.backend, self.dtype, self.threads).name


def _median_problem(where: str, entry, skip: bool = False) -> str | None:
    import math

    if not isinstance(entry, dict):
        return f"{where} is not a table entry"
    m = entry.get("median")
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m):
        return f"{where} has a median of {m!r}: a latency must be a finite number of milliseconds"
    if m < 0 or (m == 0 and not skip):  # a skip is folded away: it costs nothing
        return f"{where} has a median of {m} ms: a latency must be positive"
    return None


def entries_problem(t: "LatencyTable") -> str | None:
    """What makes a table's entries unusable (a median that is missing, not a number, not finite or not positive;
    a choice the space does not have; a calibration term that is not a finite number), or None."""
    for where, entry in (("the stem", t.stem), ("the head", t.head)):
        if entry is not None or t.complete:
            why = _median_problem(where, entry)
            if why:
                return why
    sp = get_space(t.space)
    for i, layer in enumerate(t.layers):
        if not isinstance(layer, dict):
            return f"layer {i} is not a table of choices"
        allowed = {c.token: c for c in sp.choices_at(i)}
        for token, entry in layer.items():
            if token not in allowed:
                return f"layer {i} has a choice '{token}' the {t.space} space does not have there"
            why = _median_problem(f"layer {i} {token}", entry, skip=allowed[token].skip)
            if why:
                return why
    cal = t.calibration
    if cal is not None:
        import math

        if not isinstance(cal, dict):
            return "its calibration is not a table of terms"
        bad = [k for k in ("a", "b", "c", "d") if k in cal and (isinstance(cal[k], bool) or not (
            isinstance(cal[k], (int, float)) and math.isfinite(cal[k])))]
        if bad:
            return f"its calibration has terms that are not finite numbers ({', '.join(bad)})"
    return None


class EngineTables:
    """The latency tables of the candidate engines for one space and input setting: an architecture's latency is
    that of its fastest engine, and which engine that is travels with it (the search considers every engine)."""

    def __init__(self, tables: dict[str, LatencyTable]) -> None:
        if not tables:
            raise ArtifactError("no latency table given: measure one with `nasdeploy latency-table`")
        first = next(iter(tables.values()))
        for t in tables.values():
            diff = {k for k in ("space", "input_size", "stride_plan", "num_classes", "batch")
                    if getattr(t, k) != getattr(first, k)}
            if diff:
                raise ArtifactError(f"latency tables {first.path} and {t.path} were measured for different "
                                    f"settings ({', '.join(sorted(diff))}): measure them for the same model setting")
            if not t.complete:
                raise ArtifactError(f"latency table {t.path} is incomplete: rerun `nasdeploy latency-table` to "
                                    "finish it")
        self.tables = tables

    @classmethod
    def load(cls, paths, space: str | None = None) -> "EngineTables":
        tables = [LatencyTable.load(p, space=space) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        out: dict[str, LatencyTable] = {}
        for t in tables:
            if t.engine in out:
                raise ArtifactError(f"two latency tables for {t.engine} ({out[t.engine].path}, {t.path}): give one")
            out[t.engine] = t
        return cls(out)

    @property
    def first(self) -> LatencyTable:
        return next(iter(self.tables.values()))

    @property
    def space(self) -> str:
        return self.first.space

    def by_engine(self, arch: Arch | str) -> dict[str, float]:
        return {e: t.predict(arch) for e, t in self.tables.items()}

    def best(self, arch: Arch | str) -> tuple[str, float]:
        """(the engine predicted fastest for ``arch``, its latency)."""
        return min(self.by_engine(arch).items(), key=lambda kv: kv[1])

    def predict(self, arch: Arch | str) -> float:
        return self.best(arch)[1]

    def layer_cost(self, index: int, token: str) -> float:
        """A choice's own cost, for ordering choices (its smallest share of a prediction over the engines)."""
        return min(t.layer_share(index, token) for t in self.tables.values())

    def fastest(self) -> tuple[Arch, float]:
        return min((t.fastest() for t in self.tables.values()), key=lambda am: am[1])

    def describe(self) -> str:
        f = self.first
        engines = ", ".join(self.tables)
        return f"{f.space} / {f.device_name or f.device} / {engines} / batch {f.batch} / {f.input_size}px"
