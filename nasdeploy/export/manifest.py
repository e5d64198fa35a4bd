"""An export folder is the deployable unit: ``manifest.json`` lists every engine with its files and their hashes,
precision, batch range, the instruction set an INT8 engine was quantized for and gated on, and its accuracy gate;
under ``refused``, the engines the accuracy gate left out, with their gates. ``bench``, ``verify`` and the pipeline
load engines through it, so what they time and score is exactly those files. A manifest is checked when it is read:
a field of the wrong type is refused in one line, not met later as a crash.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..backends.base import Engine
from ..data import InputSetting
from ..errors import ArtifactError, DataError

FORMAT = "nasdeploy-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_export(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def open_export(spec) -> "ExportFolder | None":
    """The export folder ``spec`` names, or None where it names something else (a zoo name, card or checkpoint);
    a folder that holds no manifest is refused, saying so, rather than looked up as a model name."""
    if not isinstance(spec, (str, Path)):
        return None
    if is_export(spec):
        return ExportFolder.open(spec)
    from ..zoo import list_models

    if Path(spec).is_dir() and str(spec) not in list_models():
        return ExportFolder.open(spec)  # refused: no manifest.json
    return None


def inside_name(name: str) -> bool:
    """Whether a file name of a manifest stays inside its folder: relative, without '..' or a drive."""
    p = Path(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and not name.startswith("~")


def _kind(v) -> str:
    """A JSON value's type, as a reader of the file would name it."""
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, (int, float)):
        return "a number"
    return "null"


_ENGINE_KEYS = ("backend", "precision", "device", "files", "batch_range")


def _engine_problem(name, e) -> str | None:
    """What is wrong with one engine entry of a manifest, or None."""
    if not isinstance(name, str) or name.count(":") != 1 or not all(name.partition("@")[0].split(":")):
        return f"engine name {name!r} is not BACKEND:PRECISION[@THREADS]"
    if not isinstance(e, dict):
        return f"engine {name} must be a table of {', '.join(_ENGINE_KEYS)}, not {_kind(e)}"
    for key in ("backend", "precision", "device"):
        if not isinstance(e.get(key), str):
            return f"engine {name}: {key} must be a string, not {_kind(e.get(key))}"
    threads = e.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        return f"engine {name}: threads must be a whole number of at least 1, not {json.dumps(threads)}"
    said = Engine(e["backend"], e["precision"], threads).name
    if name != said:
        return f"engine {name} holds {said} (its backend, precision and threads): the name must say what it runs"
    files = e.get("files")
    if not isinstance(files, dict) or not files or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        return f"engine {name}: files must be a table of file name to sha256, not {_kind(files)}"
    outside = next((f for f in files if not inside_name(f)), None)
    if outside is not None:
        return f"engine {name} names the file {outside!r}: an export's files are inside its folder (a relative name, " \
               "no '..')"
    rng = e.get("batch_range")
    if not (isinstance(rng, list) and len(rng) == 2 and isinstance(rng[0], int) and not isinstance(rng[0], bool)
            and rng[0] >= 1 and (rng[1] is None or isinstance(rng[1], int) and not isinstance(rng[1], bool)
                                 and rng[1] >= rng[0])):
        return f"engine {name}: batch_range must be [MIN, MAX] (MAX a number or null), not {json.dumps(rng)}"
    for key in ("gate", "isa", "parity", "quantization"):
        if e.get(key) is not None and not isinstance(e[key], dict):
            return f"engine {name}: {key} must be a table, not {_kind(e[key])}"
    gated_on = (e.get("isa") or {}).get("gated_on")
    if gated_on is not None and not isinstance(gated_on, dict):
        return f"engine {name}: isa.gated_on must be a table, not {_kind(gated_on)}"
    return None


def manifest_problem(m: dict) -> str | None:
    """What makes ``m`` (a manifest with its format and version checked) unusable, or None: every field bench,
    verify and the pipeline read, with its type."""
    engines = m["engines"]
    if not isinstance(engines, dict):
        return f"engines must be a table of engine name (BACKEND:PRECISION[@THREADS]) to its files and settings, not " \
               f"{_kind(engines)}"
    if not engines:
        return "engines lists no engine"
    for name, e in engines.items():
        why = _engine_problem(name, e)
        if why:
            return why
    pt = m["pytorch"]
    if not (isinstance(pt, dict) and isinstance(pt.get("file"), str) and isinstance(pt.get("sha256"), str)):
        return f"pytorch must be a table with file and sha256 strings, not {_kind(pt)}"
    if not inside_name(pt["file"]):
        return f"pytorch names the file {pt['file']!r}: an export's files are inside its folder (a relative name, " \
               "no '..')"
    if not isinstance(m["input"], dict):
        return f"input must be a table (size, num_classes, ...), not {_kind(m['input'])}"
    try:
        InputSetting.from_dict(m["input"])
    except DataError:
        return "input must hold a size and a number of classes"
    if m.get("name") is not None and not isinstance(m["name"], str):
        return f"name must be a string, not {_kind(m['name'])}"
    lt = m.get("latency_target")
    if lt is not None and not (isinstance(lt, dict) and isinstance(lt.get("target_ms"), (int, float))
                               and not isinstance(lt.get("target_ms"), bool) and lt["target_ms"] > 0
                               and isinstance(lt.get("batch"), int) and lt["batch"] >= 1):
        return "latency_target must be a table with a positive target_ms and a batch"
    refused = m.get("refused")
    if refused is not None and not (isinstance(refused, dict) and all(isinstance(r, dict) for r in refused.values())):
        return f"refused must be a table of engine name to its gate, not {_kind(refused)}"
    return None


@dataclass
class ExportFolder:
    path: Path
    manifest: dict

    @classmethod
    def open(cls, path: str | Path) -> "ExportFolder":
        path = Path(path)
        if not path.is_dir():
            raise ArtifactError(f"export folder {path} does not exist: export it with `nasdeploy export`")
        try:
            m = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            raise ArtifactError(f"{path} is a folder but not an export (no {MANIFEST}): export a model into it with "
                                "`nasdeploy export`") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            raise ArtifactError(f"{path}/{MANIFEST} is not readable JSON: export the model again") from None
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise ArtifactError(f"{path}/{MANIFEST} is not a nasdeploy export manifest")
        if m.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(f"{path}: export format {m.get('format_version')} is not {FORMAT_VERSION}: export "
                                "again with this nasdeploy")
        for key in ("engines", "input", "pytorch"):
            if key not in m:
                raise ArtifactError(f"{path}/{MANIFEST} has no '{key}': is it truncated? export again")
        why = manifest_problem(m)
        if why:
            raise ArtifactError(f"{path}/{MANIFEST} is not a nasdeploy export manifest: {why}; export again")
        return cls(path, m)

    @property
    def setting(self) -> InputSetting:
        return InputSetting.from_dict(self.manifest["input"])

    @property
    def engines(self) -> dict[str, dict]:
        return self.manifest["engines"]

    @property
    def pytorch_file(self) -> str:
        """The folded PyTorch model's file, inside the folder."""
        return self.manifest["pytorch"]["file"]

    @property
    def refused(self) -> dict[str, dict]:
        """The engines the accuracy gate left out of the export: name -> gate and reason."""
        return self.manifest.get("refused") or {}

    @property
    def name(self) -> str:
        return self.manifest.get("name") or self.path.name

    @property
    def latency_target(self) -> dict | None:
        """The latency target a deployed folder's engine was chosen under: target_ms, batch, confidence (None: an
        export folder, made before any target)."""
        return self.manifest.get("latency_target")

    def listed(self, name: str) -> tuple[str, int | None]:
        """The manifest's engine that runs ``name`` and the threads it runs with: ``name`` itself, or, for
        ENGINE@THREADS where the manifest lists ENGINE without threads, ENGINE at THREADS (the same files)."""
        if name in self.engines:
            return name, self.engines[name].get("threads")
        e = Engine.parse(name)
        plain = e.plain.name
        if e.threads and plain in self.engines and not self.engines[plain].get("threads"):
            return plain, e.threads
        self.entry(name)  # the one-line refusal: no such engine
        raise AssertionError("unreachable")  # pragma: no cover

    def engine(self, name: str):
        """The ``backends.Engine`` (runtime, precision, threads) the engine ``name`` runs (``listed``)."""
        listed, threads = self.listed(name)
        e = self.entry(listed)
        return Engine(e["backend"], e["precision"], threads)

    def entry(self, engine: str) -> dict:
        if engine not in self.engines:
            has = ", ".join(self.engines)
            reason = self.refused.get(engine, {}).get("reason")
            if isinstance(reason, str) and reason.startswith(engine):  # "ENGINE loses too much accuracy: ..."
                raise ArtifactError(f"{self.path} holds no {engine} engine: it was left out at export, as it"
                                    f"{reason[len(engine):]}; the export has {has}")
            raise ArtifactError(f"{self.path} holds no {engine} engine (it has {has})")
        return self.engines[engine]

    def check_files(self, engine: str | None = None) -> dict[str, str]:
        """The files of ``engine`` (None: the PyTorch model) with their hashes, checked against the manifest."""
        files = self.entry(engine)["files"] if engine else {self.manifest["pytorch"]["file"]:
                                                            self.manifest["pytorch"]["sha256"]}
        root = self.path.resolve()
        for name, digest in files.items():
            f = self.path / name
            if not f.resolve().is_relative_to(root):
                raise ArtifactError(f"{f} leads out of the export folder (to {f.resolve()}): an export's files are "
                                    "inside its folder; export the model again")
            if not f.is_file():
                raise ArtifactError(f"{f} is missing from the export: export the model again")
            if sha256(f) != digest:
                raise ArtifactError(f"{f} changed after it was exported, timed and gated: export the model again")
        return dict(files)

    def plain(self):
        """The folded float32 PyTorch model of the export (the reference every engine was checked against)."""
        from ..zoo import load_network

        self.check_files(None)
        return load_network(self.path / self.manifest["pytorch"]["file"], setting=self.setting)

    def runner(self, engine: str, device: str | None = None, batch_range: tuple[int, int | None] = (1, None),
               threads: int | None = None):
        """A runner on exactly the files the manifest lists for ``engine`` (their hashes checked first), with the
        threads the engine names (``threads``: others, to measure them). ``batch_range``: the batches it will be
        called with (an engine built for fixed batches keeps its own)."""
        from ..backends import Sources, Target, require

        engine, named = self.listed(engine)
        e = self.entry(engine)
        files = self.check_files(engine)
        device = device or e["device"]
        threads = threads or named
        be = require(e["backend"], e["precision"], device, threads)
        if be.fixed_batch:
            lo, hi = e["batch_range"]
            batch_range = (lo, hi)
        lo, hi = batch_range
        size = self.setting.size
        top = hi if hi is not None else max(lo, 1)
        target = Target((top, 3, size, size), (lo, top), device, e["precision"], threads=threads)
        pytorch = self.manifest["pytorch"]["file"]
        path = None if list(files) == [pytorch] else self.path / next(iter(files))
        src = Sources(self.plain() if path is None else None, self.path, (3, size, size))
        runner = be.load(src, path, target)
        runner.files = files
        return runner

    def isa_mismatch(self, engine: str) -> str | None:
        """Why an INT8 engine's recorded accuracy may not hold on this CPU (another INT8 class), or None."""
        from ..isa import mismatch

        e = self.entry(engine)
        if e["precision"] != "int8" or e["device"] != "cpu":
            return None
        return mismatch((e.get("isa") or {}).get("gated_on"))
