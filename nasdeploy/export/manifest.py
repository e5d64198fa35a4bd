"""An export folder is the deployable unit: ``manifest.json`` lists every engine with its files and their hashes,
precision, batch range, the instruction set an INT8 engine was quantized for and gated on, and its accuracy gate;
under ``refused``, the engines the accuracy gate left out, with their gates. ``bench``, ``verify`` and the pipeline
load engines through it, so what they time and score is exactly those files.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..data import InputSetting
from ..errors import ArtifactError

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
            raise ArtifactError(f"{path} is not a nasdeploy export (no {MANIFEST}): export it again with this "
                                "nasdeploy") from None
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
        return cls(path, m)

    @property
    def setting(self) -> InputSetting:
        return InputSetting.from_dict(self.manifest["input"])

    @property
    def engines(self) -> dict[str, dict]:
        return self.manifest["engines"]

    @property
    def refused(self) -> dict[str, dict]:
        """The engines the accuracy gate left out of the export: name -> gate and reason."""
        return self.manifest.get("refused") or {}

    @property
    def name(self) -> str:
        return self.manifest.get("name") or self.path.name

    def entry(self, engine: str) -> dict:
        if engine not in self.engines:
            has = ", ".join(self.engines) or "none"
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
        for name, digest in files.items():
            f = self.path / name
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

    def runner(self, engine: str, device: str | None = None, batch_range: tuple[int, int | None] = (1, None)):
        """A runner on exactly the files the manifest lists for ``engine`` (their hashes checked first).
        ``batch_range``: the batches it will be called with (an engine built for fixed batches keeps its own)."""
        from ..backends import Sources, Target, require

        e = self.entry(engine)
        files = self.check_files(engine)
        device = device or e["device"]
        be = require(e["backend"], e["precision"], device)
        if be.fixed_batch:
            lo, hi = e["batch_range"]
            batch_range = (lo, hi)
        lo, hi = batch_range
        size = self.setting.size
        top = hi if hi is not None else max(lo, 1)
        target = Target((top, 3, size, size), (lo, top), device, e["precision"])
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
