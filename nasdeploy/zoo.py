"""The model zoo: cards under ``nasdeploy/cards`` (``models/`` at the repository root), ``create_model``."""
from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoints import network as network_ckpt
from .checkpoints.files import read_file
from .checkpoints.official import load_state, unwrap
from .data import BUILTIN_SETTING, InputSetting
from .errors import ArtifactError, CheckpointError, ModelNotFoundError, NasDeployError
from .nas.net import Network, count_macs, count_params, make_plain_structure
from .nas.space import Arch, get_space

CARDS_DIR = Path(__file__).resolve().parent / "cards"
CARD_FORMAT_VERSION = 1


@dataclass
class Card:
    """A model card: architecture, block flavour, checkpoint layout and reference numbers."""

    name: str
    space: str
    flavour: str
    arch: Arch
    num_classes: int = 1000
    input_size: int = 224
    dropout: float = 0.0
    stride_plan: list[int] | None = None
    stabilizers: list[int] = field(default_factory=list)
    description: str = ""
    checkpoint: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    preprocess: dict[str, Any] = field(default_factory=dict)  # mean, std, crop_pct (default: ImageNet's official)
    path: Path | None = None

    @classmethod
    def from_dict(cls, d: dict, path: Path | None = None) -> "Card":
        where = str(path) if path else "card"
        if d.get("format_version") != CARD_FORMAT_VERSION:
            raise ArtifactError(f"{where}: card format {d.get('format_version')!r} is not {CARD_FORMAT_VERSION}")
        for key in ("name", "space", "flavour", "arch"):
            if key not in d:
                raise ArtifactError(f"{where}: card has no '{key}'")
        arch = get_space(d["space"]).validate(d["arch"])
        _check_stride_plan(d, where)
        return cls(name=d["name"], space=d["space"], flavour=d["flavour"], arch=arch,
                   num_classes=int(d.get("num_classes", 1000)), input_size=int(d.get("input_size", 224)),
                   dropout=float(d.get("dropout", 0.0)), stride_plan=d.get("stride_plan"),
                   stabilizers=list(d.get("stabilizers", [])), description=d.get("description", ""),
                   checkpoint=dict(d.get("checkpoint", {})), counts=dict(d.get("counts", {})),
                   reference=dict(d.get("reference", {})), search=dict(d.get("search", {})),
                   preprocess=dict(d.get("preprocess", {})), path=path)

    @classmethod
    def read(cls, path: str | Path) -> "Card":
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"card {path} does not exist")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ArtifactError(f"{path} is not a valid TOML card ({e})") from None
        return cls.from_dict(data, path)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"format_version": CARD_FORMAT_VERSION, "name": self.name, "space": self.space,
                             "flavour": self.flavour, "arch": str(self.arch), "num_classes": self.num_classes,
                             "input_size": self.input_size, "dropout": self.dropout}
        if self.stride_plan:
            d["stride_plan"] = list(self.stride_plan)
        if self.stabilizers:
            d["stabilizers"] = list(self.stabilizers)
        if self.description:
            d["description"] = self.description
        for section in ("preprocess", "checkpoint", "counts", "reference", "search"):
            if getattr(self, section):
                d[section] = getattr(self, section)
        return d

    def write(self, path: str | Path) -> Path:
        import tomli_w

        from .io import write_text

        return write_text(path, "# nasdeploy model card\n" + tomli_w.dumps(self.to_dict()))

    def local_weights(self) -> Path | None:
        """The weights file a card names, when it lies beside the card (search results carry theirs). A card of
        the user's (not the zoo's, whose official weights are downloaded by the user and given with --weights) that
        names a file which is not there is refused: it would build a network of random weights without a word."""
        f = self.checkpoint.get("file")
        if not f or self.path is None:
            return None
        if (self.path.parent / f).is_file():
            return self.path.parent / f
        if self.path.resolve().parent != CARDS_DIR:
            raise CheckpointError(f"card {self.path} names its weights {f}, which is not beside it "
                                  f"({self.path.parent / f}): put the file there, or pass --weights")
        return None

    def build(self, num_classes: int | None = None) -> Network:
        return Network(self.arch, self.flavour, num_classes or self.num_classes, self.stride_plan,
                       self.stabilizers, dropout=self.dropout, input_setting=self.setting(num_classes))

    def setting(self, num_classes: int | None = None) -> InputSetting:
        """The input setting the card declares (preprocessing: ImageNet's official one unless it says otherwise)."""
        p = self.preprocess
        base = InputSetting()
        return InputSetting(self.input_size, num_classes or self.num_classes,
                            tuple(self.stride_plan) if self.stride_plan else None,
                            tuple(p.get("mean", base.mean)), tuple(p.get("std", base.std)),
                            float(p.get("crop_pct", base.crop_pct)))

    @classmethod
    def for_setting(cls, setting: InputSetting, **kw) -> "Card":
        """A card whose input fields and preprocessing are ``setting``'s."""
        return cls(num_classes=setting.num_classes, input_size=setting.size,
                   stride_plan=list(setting.stride_plan) if setting.stride_plan else None,
                   preprocess={"mean": list(setting.mean), "std": list(setting.std), "crop_pct": setting.crop_pct},
                   **kw)


def _check_stride_plan(d: dict, where: str) -> None:
    """A card's stride plan must be the one its input size takes (``InputSetting``: the small-input plan under
    64 px, the official one above), or absent: any other describes a network no input setting runs."""
    try:
        size = int(d.get("input_size", 224))
    except (TypeError, ValueError):
        raise ArtifactError(f"{where}: input_size must be a number of pixels, not {d.get('input_size')!r}") from None
    want = InputSetting.for_images(size, 2).stride_plan
    plan = d.get("stride_plan")
    if plan is not None and (not isinstance(plan, list) or tuple(plan) != tuple(want or ())):
        wanted = list(want) if want else "none (the official plan)"
        raise ArtifactError(f"{where}: stride_plan {plan!r} is not the plan {size} px inputs take ({wanted}): "
                            "remove stride_plan, nasdeploy derives it from input_size")


def _zoo_order(path: Path) -> tuple:
    """fairnas_a..c, scarlet_a..c, then the SE, SE-0.5 and transfer variants."""
    n = path.stem
    group = (n.endswith("transfer"), "_se" in n, "0.5" in n, not n.startswith("scarlet"))
    return group, n


def _load_cards() -> dict[str, Card]:
    return {p.stem: Card.read(p) for p in sorted(CARDS_DIR.glob("*.toml"), key=_zoo_order)}


_CARDS: dict[str, Card] | None = None


def cards() -> dict[str, Card]:
    global _CARDS
    if _CARDS is None:
        _CARDS = _load_cards()
    return _CARDS


def list_models() -> list[str]:
    return list(cards())


def get_card(name_or_path: str | Path) -> Card:
    """A zoo name, or the path of a card file (a search result)."""
    s = str(name_or_path)
    if s in cards():
        return cards()[s]
    if s.endswith(".toml") or Path(s).is_file():
        return Card.read(s)
    if Path(s).is_dir():
        raise ModelNotFoundError(f"{s} is {_folder_kind(Path(s))}, not a model: give a zoo model name, a card file "
                                 "or a checkpoint")
    if "/" in s or s.endswith((".pt", ".pth", ".tar", ".toml")):
        raise ModelNotFoundError(f"{s} does not exist: give a zoo model name, a card file or a checkpoint path")
    key = s.lower().replace("-", "_").replace(" ", "_")
    if key in cards():
        raise ModelNotFoundError(f"unknown model '{s}': did you mean {key}? `nasdeploy zoo` lists the "
                                 f"{len(cards())} models")
    close = difflib.get_close_matches(key, list(cards()), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ModelNotFoundError(f"unknown model '{s}': {hint}`nasdeploy zoo` lists the {len(cards())} models")


def _folder_kind(path: Path) -> str:
    """What a folder given as a model is, in words."""
    if (path / "manifest.json").is_file():
        return "an export folder (bench or verify it: `nasdeploy bench`, `nasdeploy verify`)"
    if (path / "supernet.pt").is_file() or (path / "checkpoint.pt").is_file():
        return "a supernet training folder (search it: `nasdeploy search --supernet`)"
    if (path / "train").is_dir() or (path / "val").is_dir():
        return "a data folder"
    return "a folder"


def find_card(spec: str | Path) -> Card | None:
    """The card behind a zoo name or card file, or None (for a checkpoint that carries its own structure)."""
    try:
        return get_card(spec)
    except NasDeployError:
        return None


def load_weights(model: Network, weights: str | Path, card: Card | None = None) -> Network:
    obj = read_file(weights)
    state, config = unwrap(obj, weights)
    if config is not None:
        layout = "nasdeploy"
        if config.get("arch") != str(model.arch):
            raise CheckpointError(f"{weights} was saved for architecture {config.get('arch')}, not {model.arch}")
        if config.get("folded") and not model.folded:
            make_plain_structure(model)
    else:
        layout = "timm" if "conv_stem.weight" in state else "official"
    load_state(model, state, layout, source=str(weights))
    return model


def create_model(name: str | Path, weights: str | Path | None = None, num_classes: int | None = None) -> Network:
    """Build a zoo model (or a card file) and optionally load an official or nasdeploy checkpoint."""
    card = get_card(name)
    model = card.build(num_classes)
    weights = weights if weights is not None else card.local_weights()
    if weights is not None:
        load_weights(model, weights, card)
    return model.eval()


def save_checkpoint(model: Network, path: str | Path, extra: dict | None = None,
                    setting: InputSetting | None = None) -> Path:
    """A nasdeploy checkpoint: structure, weights, input setting (``setting``, else the network's own) and provenance."""
    setting = setting or model.input_setting
    return network_ckpt.save(path, model.config(), model.state_dict(), setting.as_dict() if setting else None, extra)


def load_network(path: str | Path, setting: InputSetting | None = None) -> Network:
    """A network saved by ``save_checkpoint`` (its structure and input setting come with it; ``setting``: another
    input setting to give it, as an export folder's manifest records)."""
    obj = read_file(path)
    state, config = unwrap(obj, path)
    if config is None:
        raise CheckpointError(f"{path} is not a nasdeploy checkpoint: give a model name or card with --weights")
    model = Network.from_config(config, input_setting=setting or _recorded_setting(obj, config))
    load_state(model, state, "nasdeploy", source=str(path))
    return model.eval()


def _recorded_setting(obj: dict, config: dict) -> InputSetting:
    """The input setting a checkpoint records; checkpoints of earlier versions record none: the built-in images for
    the small-input stride plan, the official ImageNet preprocessing otherwise."""
    if isinstance(obj.get("input"), dict):
        return InputSetting.from_dict(obj["input"])
    if config.get("stride_plan"):
        return InputSetting(BUILTIN_SETTING.size, config["num_classes"], tuple(config["stride_plan"]),
                            BUILTIN_SETTING.mean, BUILTIN_SETTING.std, BUILTIN_SETTING.crop_pct)
    return InputSetting(num_classes=config["num_classes"])


def model_info(name: str | Path) -> dict[str, Any]:
    card = get_card(name)
    model = card.build()
    return {
        "name": card.name,
        "space": card.space,
        "flavour": card.flavour,
        "arch": str(card.arch),
        "num_classes": card.num_classes,
        "input_size": card.input_size,
        "params": count_params(model),
        "macs": count_macs(model, 224),
        "reference": card.reference,
        "checkpoint": card.checkpoint,
        "description": card.description,
    }


@dataclass
class Resolved:
    """A model resolved once: what was asked for, its network (eval mode, weights loaded, its input setting with it)
    and card, and its folded form (made on first use). Export, bench, verify and the pipeline all start from it."""

    spec: str
    net: Network
    card: Card | None = None
    _folded: tuple[Network, Any] | None = field(default=None, repr=False)

    @property
    def setting(self) -> InputSetting:
        """The input setting the network was made with."""
        return self.net.input_setting

    @property
    def name(self) -> str:
        if self.card is not None and self.card.path is None:
            return self.card.name
        name = Path(self.spec).name
        for suffix in (".pth.tar", ".toml", ".pt", ".pth", ".tar"):
            if name.endswith(suffix):
                return name[: -len(suffix)] or "model"
        return name or "model"

    def folded(self):
        """(the plain network, the fold report): BN and stabilizers folded, checked numerically."""
        if self._folded is None:
            from .fold import fold

            plain, rep = fold(self.net, input_size=min(self.setting.size, 64))  # a copy: the setting comes along
            self._folded = (plain, rep)
        return self._folded

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, 3, self.setting.size, self.setting.size)


def resolve(spec: str | Path, weights: str | Path | None = None) -> Resolved:
    """A zoo name or card (with optional ``weights``), or a nasdeploy checkpoint file holding its own structure."""
    s = str(spec)
    if s not in cards() and not s.endswith(".toml") and Path(s).is_file():
        if weights is not None:
            raise CheckpointError(f"{s} is a checkpoint already: drop --weights, or give a model name or card")
        return Resolved(s, load_network(s))
    return Resolved(s, create_model(s, weights=weights), get_card(s))


def load_any(spec: str | Path, weights: str | Path | None = None) -> Network:
    """The network of ``resolve(spec, weights)``."""
    return resolve(spec, weights).net
