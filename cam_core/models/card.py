"""The model card: what a checkpoint is, and the auto-configured CAM setting it recommends.

A :class:`ModelCard` is the JSON file beside a checkpoint (:func:`card_path_for`): architecture,
class names in output order, preprocessing, provenance, and a :class:`Recommendation` parsed
once when the card is read. :attr:`ModelCard.default_layer` is the one owner of "which CAM
layer when none is chosen".
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cam_core.models.registry import get_arch


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (Path, set, frozenset)):
        return str(value) if isinstance(value, Path) else sorted(value)
    raise TypeError(f"Model card value of type {type(value).__name__} is not JSON-serialisable")


Figure = float | int | str | None
"""One value of a summary row: a score, a count, the class name, or None (no data)."""


def _need(data: Mapping[str, Any], key: str, at: str) -> Any:
    if data.get(key) is None:
        raise ValueError(f"{at}.{key} is missing")
    return data[key]


def _text(value: object, at: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{at} must be a non-empty string, got {value!r}")
    return value


def _number(value: object, at: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{at} must be a number, got {value!r}")
    return float(value)


def _flag(value: object, at: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{at} must be true or false, got {value!r}")
    return bool(value)


def _mapping(value: object, at: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{at} must be a JSON object, got {type(value).__name__}")
    return value


def _figures(value: object, at: str) -> dict[str, Figure]:
    out: dict[str, Figure] = {}
    for name, v in _mapping(value, at).items():
        if v is None or isinstance(v, str):
            out[str(name)] = v
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            out[str(name)] = int(v)
        else:
            out[str(name)] = _number(v, f"{at}.{name}")
    return out


def _size(value: object, at: str) -> int | tuple[int, int]:
    """An input size: a positive int (square), or [height, width] (an equal pair → the int)."""
    if isinstance(value, list | tuple) and len(value) == 2:
        h, w = (_size(v, at) for v in value)
        if not isinstance(h, int) or not isinstance(w, int):
            raise ValueError(f"{at} must be an int or [height, width], got {value!r}")
        return h if h == w else (h, w)
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{at} must be an int or [height, width], got {value!r}")
    if int(value) != value or int(value) <= 0:
        raise ValueError(f"{at} {value} must be a whole number > 0")
    return int(value)


@dataclass(frozen=True)
class Candidate:
    """One (method, layer, flip averaging) setting tried by auto-configuration, and its score."""

    method: str
    layer: str
    flips: bool
    score: float

    @classmethod
    def from_dict(cls, data: object, at: str) -> Candidate:
        """Parse one ``candidates`` entry; ValueError naming ``at`` and the field."""
        data = _mapping(data, at)
        return cls(
            method=_text(_need(data, "method", at), f"{at}.method"),
            layer=_text(_need(data, "layer", at), f"{at}.layer"),
            flips=_flag(data.get("flips", False), f"{at}.flips"),
            score=_number(_need(data, "score", at), f"{at}.score"),
        )


@dataclass(frozen=True)
class Calibration:
    """Where a recommendation was calibrated: split, number of images, target rule, score rule."""

    split: str | None
    n: int | None
    target_rule: str | None = None
    rule: str | None = None

    @classmethod
    def from_dict(cls, data: object, at: str) -> Calibration:
        """Parse the ``calibration`` object; ValueError naming ``at`` and the field."""
        data = _mapping(data, at)
        n = data.get("n")
        texts = {}
        for key in ("split", "target_rule", "rule"):
            value = data.get(key)
            texts[key] = None if value is None else _text(value, f"{at}.{key}")
        return cls(n=None if n is None else int(_number(n, f"{at}.n")), **texts)


@dataclass(frozen=True)
class Recommendation:
    """A model's auto-configured CAM setting: the card's ``"recommended"`` JSON object.

    ``method`` @ ``layer`` (a layer path, or layer paths joined by ``+``), averaged over the
    four flips when ``flips``. ``threshold``: the map → boxes cut, a fraction of the map's peak
    in [0, 1]. ``score``: the calibration rule's value for this setting. ``figures``: its
    summary row on the calibration split (metric → value, plus ``class``, ``n``).
    ``baselines``: trivial maps' figures (``"baseline:centre"`` → metric → value).
    ``candidates``: every setting tried. ``calibration``: split, n and rules.

    Parsed and validated once (:meth:`from_dict`, when the card is built or read); read the
    attributes (there is no dict access: every caller reads one typed value).
    """

    method: str
    layer: str
    flips: bool = False
    threshold: float | None = None
    score: float | None = None
    figures: dict[str, Figure] = field(default_factory=dict)
    baselines: dict[str, dict[str, Figure]] = field(default_factory=dict)
    candidates: tuple[Candidate, ...] = ()
    calibration: Calibration | None = None

    @classmethod
    def from_dict(cls, data: object, at: str = "recommended") -> Recommendation:
        """Parse a ``"recommended"`` JSON object. ``at`` prefixes every error message, which
        names the bad field (e.g. ``"ModelCard 'm': recommended.threshold must be in [0, 1],
        got 2.0"``). Unknown keys are ignored, as the card ignores unknown top-level keys.
        """
        data = _mapping(data, at)
        threshold = data.get("threshold")
        if threshold is not None:
            threshold = _number(threshold, f"{at}.threshold")
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"{at}.threshold must be in [0, 1], got {threshold}")
        score = data.get("score")
        calibration = data.get("calibration")
        return cls(
            method=_text(_need(data, "method", at), f"{at}.method"),
            layer=_text(_need(data, "layer", at), f"{at}.layer"),
            flips=_flag(data.get("flips", False), f"{at}.flips"),
            threshold=threshold,
            score=None if score is None else _number(score, f"{at}.score"),
            figures=_figures(data.get("figures") or {}, f"{at}.figures"),
            baselines={
                str(name): _figures(row, f"{at}.baselines.{name}")
                for name, row in _mapping(data.get("baselines") or {}, f"{at}.baselines").items()
            },
            candidates=tuple(
                Candidate.from_dict(c, f"{at}.candidates[{i}]")
                for i, c in enumerate(data.get("candidates") or ())
            ),
            calibration=None
            if calibration is None
            else Calibration.from_dict(calibration, f"{at}.calibration"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored under the card's ``"recommended"`` key (None parts left out)."""
        out = {
            "method": self.method,
            "layer": self.layer,
            "flips": self.flips,
            "threshold": self.threshold,
            "score": self.score,
            "figures": dict(self.figures),
            "baselines": {name: dict(row) for name, row in self.baselines.items()},
            "candidates": [dataclasses.asdict(c) for c in self.candidates],
            "calibration": None
            if self.calibration is None
            else {k: v for k, v in dataclasses.asdict(self.calibration).items() if v is not None},
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint is: architecture, class names (output order), preprocessing, provenance.

    ``input_size`` is the side in pixels the model is fed (an int: square; or [height, width]);
    ``in_chans`` its input channels (1: gray fed as is; 3: gray replicated); ``mean``/``std``
    are per-channel normalisation of [0, 1] inputs (3 values, or 1 for a 1-channel model).
    ``target_layer`` None means the architecture's default.
    ``training`` (command, split, epochs, seed, wall time …) and ``metrics`` (accuracy, per-class
    F1, confusion matrix …) are free JSON-able dicts. ``recommended`` is the auto-configured
    :class:`Recommendation` (JSON key ``"recommended"``; a mapping given here is parsed into
    one, errors naming the card and the field); read it as :attr:`recommendation`.
    :attr:`default_layer` is the one answer to "which CAM layer by default".
    ``synthetic`` marks a model trained on synthetic data.
    """

    name: str
    arch: str
    classes: tuple[str, ...]
    multilabel: bool
    input_size: int | tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    target_layer: str | None = None
    in_chans: int = 3
    synthetic: bool = False
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    recommended: Recommendation | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        classes = tuple(str(c) for c in self.classes)
        if not classes:
            raise ValueError(f"ModelCard {self.name!r}: classes is empty")
        if len(set(classes)) != len(classes):
            raise ValueError(f"ModelCard {self.name!r}: duplicate class names in {list(classes)}")
        mean = tuple(float(v) for v in self.mean)
        std = tuple(float(v) for v in self.std)
        if int(self.in_chans) not in (1, 3):
            raise ValueError(
                f"ModelCard {self.name!r}: in_chans must be 1 or 3, got {self.in_chans}"
            )
        n_stats = (1, 3) if int(self.in_chans) == 1 else (3,)
        if len(mean) not in n_stats or len(std) not in n_stats:
            raise ValueError(
                f"ModelCard {self.name!r}: mean/std need {' or '.join(map(str, n_stats))} "
                f"values for in_chans={self.in_chans}, got {mean} / {std}"
            )
        if not all(s > 0 for s in std):
            raise ValueError(f"ModelCard {self.name!r}: std values must be > 0, got {std}")
        size = _size(self.input_size, f"ModelCard {self.name!r}: input_size")
        object.__setattr__(self, "in_chans", int(self.in_chans))
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "input_size", size)
        object.__setattr__(self, "multilabel", bool(self.multilabel))
        rec = self.recommended
        if rec is not None and not isinstance(rec, Recommendation):
            rec = Recommendation.from_dict(rec, f"ModelCard {self.name!r}: recommended")
            object.__setattr__(self, "recommended", rec)

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) in pixels of the model input."""
        size = self.input_size
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    @property
    def recommendation(self) -> Recommendation | None:
        """The auto-configured method/layer/flips/threshold, None when never calibrated."""
        return self.recommended

    @property
    def default_layer(self) -> str:
        """The CAM layer used when none is chosen: the recommended one, else the card's
        ``target_layer``, else the architecture's first target layer (KeyError for an
        unregistered ``arch``, listing the valid ones).
        """
        if self.recommended is not None:
            return self.recommended.layer
        return self.target_layer or get_arch(self.arch).target_layers[0]

    @property
    def candidate_layers(self) -> tuple[str, ...]:
        """Every CAM layer worth trying: the default, the card's own, then the architecture's
        (for a ``timm/…`` or ``torchvision/…`` model, the shape probe's candidates).
        """
        options = [self.default_layer, *([self.target_layer] if self.target_layer else [])]
        with contextlib.suppress(KeyError):
            options += list(get_arch(self.arch).target_layers)
        return tuple(dict.fromkeys(options))

    def to_json(self) -> str:
        """The card as indented JSON (numpy/tensor values become lists or numbers)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["recommended"] = None if self.recommended is None else self.recommended.to_dict()
        return json.dumps(data, indent=2, default=_json_default)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelCard:
        """Parse :meth:`to_json` output; unknown keys are ignored, missing required ones raise."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Model card is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"Model card must be a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [n for n in required if n not in data]
        if missing:
            raise ValueError(f"Model card is missing required field(s): {missing}")
        kwargs = {k: v for k, v in data.items() if k in fields}
        for key in ("training", "metrics"):
            if kwargs.get(key) is None:
                kwargs[key] = {}
        return cls(**kwargs)


def card_path_for(checkpoint_path: str | os.PathLike[str]) -> Path:
    """Where the card of ``checkpoint_path`` lives: same folder and stem, ``.json`` suffix
    (``model.json`` inside a hub-layout folder given as the path).
    """
    path = Path(checkpoint_path)
    return path / "model.json" if path.is_dir() else path.with_suffix(".json")
