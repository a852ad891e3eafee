"""Architecture registry, checkpoint loading/saving with a model card, and input preprocessing.

An :class:`ArchSpec` holds what the CAM engine needs to know about a network as *strings*
(target layers, head path), so a checkpoint plus a small JSON card is enough to rebuild it.
Checkpoints are only ever read with ``torch.load(..., weights_only=True)``: a file that needs
code to unpickle is refused, never executed.

NEU-DET images are grayscale; 1-channel images are fed by replicating the gray channel to the
3-channel stem (see :func:`preprocess`), so every registered architecture keeps its stock stem.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import nn

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# --------------------------------------------------------------------------------------------
# Architecture registry


@dataclass(frozen=True)
class ArchSpec:
    """How to build one architecture and where its CAM layers and classifier head live.

    ``builder(num_classes)`` returns a freshly initialised model (no pretrained weights).
    ``target_layers`` are dotted module paths understood by :func:`resolve_layer`; the first is
    the default CAM layer. ``head`` is the dotted path of the final ``nn.Linear`` (its weight's
    first dimension is the number of classes). ``gap_linear`` is True when the output is exactly
    global-average-pool of ``target_layers[0]`` followed by one Linear, so the original CAM
    (``W @ activations``) equals the class score map.
    """

    name: str
    builder: Callable[[int], nn.Module]
    target_layers: tuple[str, ...]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    head: str
    gap_linear: bool
    description: str

    def __post_init__(self) -> None:
        if not self.target_layers:
            raise ValueError(f"ArchSpec {self.name!r}: target_layers is empty")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"ArchSpec {self.name!r}: mean/std need 3 values each")
        if self.input_size <= 0:
            raise ValueError(f"ArchSpec {self.name!r}: input_size {self.input_size} must be > 0")


ARCHS: dict[str, ArchSpec] = {}


def register_arch(spec: ArchSpec) -> ArchSpec:
    """Add ``spec`` to :data:`ARCHS`; a name already registered raises ValueError."""
    if spec.name in ARCHS:
        raise ValueError(f"Architecture {spec.name!r} is already registered")
    ARCHS[spec.name] = spec
    return spec


def get_arch(name: str) -> ArchSpec:
    """The registered spec called ``name``; KeyError listing the valid names otherwise."""
    try:
        return ARCHS[name]
    except KeyError:
        raise KeyError(f"Unknown architecture {name!r}; valid: {sorted(ARCHS)}") from None


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised ``arch`` with ``num_classes`` outputs (no pretrained weights)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return get_arch(arch).builder(num_classes)


def _torchvision(fn: Callable[..., nn.Module]) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        return fn(weights=None, num_classes=num_classes)

    build.__name__ = f"build_{fn.__name__}"
    return build


class AdaptiveConcatPool2d(nn.Module):
    """fastai's pooling: ``cat([max_pool, avg_pool], dim=1)`` → (B, 2C, size, size)."""

    def __init__(self, size: int = 1) -> None:
        super().__init__()
        self.size = size
        self.ap = nn.AdaptiveAvgPool2d(size)
        self.mp = nn.AdaptiveMaxPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, 2C, size, size), max-pooled channels first."""
        return torch.cat([self.mp(x), self.ap(x)], 1)


def _fastai_resnet(fn: Callable[..., nn.Module], nf: int) -> Callable[[int], nn.Module]:
    """The module tree fastai's ``vision_learner(dls, resnetXX)`` builds (default head).

    ``nn.Sequential(body, head)``: body = the torchvision children before avgpool/fc, head =
    ``create_head(2*nf, n)`` = ConcatPool, Flatten, BN, Dropout(.25), Linear(no bias), ReLU,
    BN, Dropout(.5), Linear(no bias). State-dict keys match ``learn.model.state_dict()``.
    """

    def build(num_classes: int) -> nn.Module:
        body = nn.Sequential(*list(fn(weights=None).children())[:-2])
        head = nn.Sequential(
            AdaptiveConcatPool2d(),
            nn.Flatten(),
            nn.BatchNorm1d(2 * nf),
            nn.Dropout(0.25),
            nn.Linear(2 * nf, 512, bias=False),
            nn.ReLU(),
            nn.BatchNorm1d(512),
            nn.Dropout(0.5),
            nn.Linear(512, num_classes, bias=False),
        )
        for m in head.modules():  # fastai's init: kaiming for Linear, BN bias 1e-3
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.constant_(m.bias, 1e-3)
        return nn.Sequential(body, head)

    build.__name__ = f"build_fastai_{fn.__name__}"
    return build


def _register_builtin() -> None:
    def tv(
        name: str, layers: tuple[str, ...], head: str, gap_linear: bool, description: str
    ) -> ArchSpec:
        return ArchSpec(
            name=name,
            builder=_torchvision(getattr(tvm, name)),
            target_layers=layers,
            input_size=224,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            head=head,
            gap_linear=gap_linear,
            description=description,
        )

    resnet_layers = ("layer4", "layer3", "layer2")
    for name in ("resnet18", "resnet34", "resnet50"):
        register_arch(
            tv(name, resnet_layers, "fc", True, f"torchvision {name}: GAP + fc (original CAM).")
        )
    register_arch(
        tv(
            "efficientnet_b0",
            ("features.8", "features.7", "features.6"),
            "classifier.1",
            True,
            "torchvision EfficientNet-B0: GAP + dropout + one Linear (original CAM applies).",
        )
    )
    register_arch(
        tv(
            "mobilenet_v3_large",
            ("features.16", "features.15", "features.12"),
            "classifier.3",
            False,
            "torchvision MobileNetV3-Large: GAP + Linear-Hardswish-Linear head.",
        )
    )
    register_arch(
        tv(
            "densenet121",
            ("features.norm5", "features.denseblock4", "features.denseblock3"),
            "classifier",
            False,
            "torchvision DenseNet-121: a functional ReLU follows features.norm5 before GAP + "
            "Linear, so W @ (hooked activations) is not the class score map.",
        )
    )
    register_arch(
        tv(
            "convnext_tiny",
            ("features.7", "features.5", "features.3"),
            "classifier.2",
            False,
            "torchvision ConvNeXt-Tiny: GAP + LayerNorm + Linear head.",
        )
    )
    register_arch(
        tv(
            "vgg16_bn",
            ("features.43", "features.42", "features.32"),
            "classifier.6",
            False,
            "torchvision VGG-16-BN: 7x7 pool + three Linear layers (features.43 = last max-pool).",
        )
    )
    for name, nf in (("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)):
        register_arch(
            ArchSpec(
                name=f"fastai_{name}",
                builder=_fastai_resnet(getattr(tvm, name), nf),
                target_layers=("0.7", "0.6", "0.5"),
                input_size=224,
                mean=IMAGENET_MEAN,
                std=IMAGENET_STD,
                head="1.8",
                gap_linear=False,
                description=f"fastai vision_learner({name}) module tree: torchvision body + "
                "concat-pool BN/Dropout/Linear head; loads learn.model.state_dict() as-is.",
            )
        )


class LocalEvidenceNet(nn.Module):
    """ResNet trunk to ``layer3`` (or ``layer2``), 1×1-conv class score maps, log-sum-exp pooling.

    Built for maps that land on the defect (see docs/localization.md): each class logit is a
    smooth maximum (LSE, sharpness ``r``; Durand et al.'s WILDCAT / Oquab et al. 2015) of a
    per-location class score, so the score map *is* the evidence the model used and a CAM of
    the last feature layer reproduces it. Every padded convolution reflects instead of
    zero-padding, which removes the border cue the plain ResNet uses as a positional shortcut on
    NEU-DET.

    ``stages=2`` cuts the trunk after ``layer2`` (stride 8, receptive field 99 px instead of
    211 px) and adds a BagNet-style ``head`` of 1×1 convolutions (Brendel & Bethge 2019): more
    capacity per location without widening what a location can see, so a location's score can
    only use its own ≈ 100-px patch.
    """

    def __init__(
        self,
        num_classes: int,
        depth: str = "resnet18",
        r: float = 4.0,
        stages: int = 3,
        head_width: int = 0,
    ) -> None:
        super().__init__()
        if stages not in (2, 3):
            raise ValueError(f"stages must be 2 or 3, got {stages}")
        base = getattr(tvm, depth)(weights=None)
        self.conv1, self.bn1 = base.conv1, base.bn1
        self.relu, self.maxpool = base.relu, base.maxpool
        self.layer1, self.layer2 = base.layer1, base.layer2
        last = base.layer2
        if stages == 3:
            self.layer3 = last = base.layer3
        block = last[-1]
        channels = (block.conv3 if hasattr(block, "conv3") else block.conv2).out_channels
        self.head: nn.Module = nn.Identity()
        if head_width:
            self.head = nn.Sequential(
                nn.Conv2d(channels, head_width, 1, bias=False),
                nn.BatchNorm2d(head_width),
                nn.ReLU(inplace=True),
                nn.Conv2d(head_width, head_width, 1, bias=False),
                nn.BatchNorm2d(head_width),
                nn.ReLU(inplace=True),
            )
            channels = head_width
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.r = r
        self.stages = stages
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.padding != (0, 0):
                m.padding_mode = "reflect"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        if self.stages == 3:
            x = self.layer3(x)
        return self.head(x)

    def score_maps(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K, h, w) class evidence per location."""
        return self.classifier(self.features(x))

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, K) logits from (B, K, h, w) score maps: log-mean-exp of r × the maps, over r."""
        s = maps.flatten(2)
        return (torch.logsumexp(self.r * s, dim=2) - math.log(s.shape[2])) / self.r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K) logits: the pooled score maps."""
        return self.pool(self.score_maps(x))


def _register_neu_arch(
    name: str, builder: Callable[[int], nn.Module], layers: tuple[str, ...], description: str
) -> None:
    """Register one of the project's NEU-DET archs: 200 px, gray statistics, 1×1 class maps."""
    register_arch(
        ArchSpec(
            name=name,
            builder=builder,
            target_layers=layers,
            input_size=200,
            mean=(0.5, 0.5, 0.5),
            std=(0.25, 0.25, 0.25),
            head="classifier",
            gap_linear=False,
            description=description,
        )
    )


_register_builtin()
for _depth in ("resnet18", "resnet34"):
    _register_neu_arch(
        f"local_{_depth}",
        functools.partial(LocalEvidenceNet, depth=_depth),
        ("layer3", "layer2"),
        f"{_depth} trunk to layer3 + 1x1 class maps + log-sum-exp pooling, "
        "reflect padding: maps that point at the defect.",
    )
_register_neu_arch(
    "patch_resnet18",
    functools.partial(LocalEvidenceNet, depth="resnet18", stages=2, head_width=256),
    ("head", "layer2"),
    "resnet18 trunk cut at layer2 (99-px receptive field) + BagNet-style 1x1 head + "
    "log-sum-exp pooling, reflect padding: evidence that stays local.",
)

# --------------------------------------------------------------------------------------------
# Layers by name

_SEGMENT = re.compile(r"(?P<attr>\w+)?(?P<idx>(?:\[-?\d+\])*)")


def _children(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(k, m) for k, m in module._modules.items() if m is not None]


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule at dotted path ``name``, with optional Python indexing of containers.

    Examples: ``"layer4"``, ``"layer4.1"``, ``"layer4[-1]"``, ``"features[-1]"``, ``"0.7"``,
    ``"layer4[-1].conv2"``. Unknown paths raise KeyError naming the path and valid names there.
    """
    if not name or not name.strip():
        raise KeyError("Empty layer name; give a dotted path such as 'layer4'")
    module = model
    walked: list[str] = []
    for segment in name.strip().split("."):
        match = _SEGMENT.fullmatch(segment)
        if match is None or not segment:
            raise KeyError(f"Malformed layer path {name!r} at {segment!r}")
        attr, idx = match.group("attr"), match.group("idx")
        if attr is not None:
            children = dict(_children(module))
            if attr not in children:
                where = ".".join(walked) or "the top level"
                valid = list(children)[:12]
                raise KeyError(
                    f"Unknown layer {name!r} in {type(model).__name__}: no {attr!r} under "
                    f"{where}; valid names there: {valid}"
                )
            module = children[attr]
            walked.append(attr)
        for i in (int(x) for x in re.findall(r"-?\d+", idx)):
            children_list = _children(module)
            if not -len(children_list) <= i < len(children_list):
                where = ".".join(walked) or "the top level"
                raise KeyError(
                    f"Unknown layer {name!r}: index [{i}] out of range for {where} "
                    f"({len(children_list)} children)"
                )
            key, module = children_list[i]
            walked.append(key)
    return module


# --------------------------------------------------------------------------------------------
# Model card


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


@dataclass(frozen=True, eq=False)
class Recommendation(Mapping[str, Any]):
    """A model's auto-configured CAM setting: the card's ``"recommended"`` JSON object.

    ``method`` @ ``layer`` (a layer path, or layer paths joined by ``+``), averaged over the
    four flips when ``flips``. ``threshold``: the map → boxes cut, a fraction of the map's peak
    in [0, 1]. ``score``: the calibration rule's value for this setting. ``figures``: its
    summary row on the calibration split (metric → value, plus ``class``, ``n``).
    ``baselines``: trivial maps' figures (``"baseline:centre"`` → metric → value).
    ``candidates``: every setting tried. ``calibration``: split, n and rules.

    Parsed and validated once (:meth:`from_dict`, when the card is built or read); read the
    attributes. The ``Mapping`` base (``rec["layer"]``) only keeps callers written for the old
    free dict working while they migrate to the attributes; delete it once none is left.
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

    # Transitional Mapping view of to_dict() (see the class docstring).
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint is: architecture, class names (output order), preprocessing, provenance.

    ``input_size`` is the square side in pixels the model is fed; ``mean``/``std`` are per-channel
    normalisation of [0, 1] inputs. ``target_layer`` None means the architecture's default.
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
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    target_layer: str | None = None
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
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"ModelCard {self.name!r}: mean/std need 3 values, got {mean} / {std}")
        if not all(s > 0 for s in std):
            raise ValueError(f"ModelCard {self.name!r}: std values must be > 0, got {std}")
        size = int(self.input_size)
        if size <= 0:
            raise ValueError(f"ModelCard {self.name!r}: input_size {size} must be > 0")
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
    """Where the card of ``checkpoint_path`` lives: same folder and stem, ``.json`` suffix."""
    return Path(checkpoint_path).with_suffix(".json")


# --------------------------------------------------------------------------------------------
# Checkpoints


class CheckpointError(ValueError):
    """A checkpoint (or its card) cannot be loaded; the message names the file and why."""


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode (fp32, on the requested device) and the card describing it."""

    model: nn.Module
    card: ModelCard

    @property
    def spec(self) -> ArchSpec:
        """The registered architecture named by the card."""
        return get_arch(self.card.arch)

    @property
    def target_layer(self) -> str:
        """The default CAM layer: :attr:`ModelCard.default_layer`."""
        return self.card.default_layer


_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "net")
_PREFIXES = ("module.", "_orig_mod.")


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _unwrap(obj: object, path: Path, depth: int = 0) -> dict[str, torch.Tensor]:
    if _is_state_dict(obj):
        return dict(obj)  # type: ignore[arg-type]
    if isinstance(obj, Mapping) and depth < 3:
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                return _unwrap(obj[key], path, depth + 1)
    if isinstance(obj, Mapping):
        keys = [str(k) for k in list(obj)[:10]]
        raise CheckpointError(
            f"{path}: no state_dict found (top-level keys {keys}); expected a dict of tensors, "
            f"or one under {list(_WRAPPER_KEYS)}"
        )
    raise CheckpointError(
        f"{path}: holds a {type(obj).__name__}, not a state_dict; re-save it with "
        "torch.save(model.state_dict(), path)"
    )


def _clean(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DataParallel/compile prefixes; floating tensors to fp32 on CPU."""
    out = dict(state)
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if out and all(k.startswith(prefix) for k in out):
                out = {k[len(prefix) :]: v for k, v in out.items()}
                changed = True
    return {
        k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()
        for k, v in out.items()
    }


def _refusal(path: Path, exc: Exception) -> CheckpointError:
    found = re.search(r"GLOBAL (\S+)", str(exc))
    needs = f" (it references {found.group(1)})" if found else ""
    return CheckpointError(
        f"{path}: refused to load — unpickling it would execute code{needs}. Only plain "
        "state_dicts are accepted; if it is a whole pickled model or fastai Learner, re-save "
        "it where it was made with torch.save(model.state_dict(), path)"
    )


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped, prefix-stripped, fp32, on CPU.

    Accepts ``.safetensors`` and torch files (a state_dict, or one wrapped under
    ``model``/``state_dict``/``model_state_dict``/``net``). Raises :class:`CheckpointError` for
    missing/empty/truncated/foreign files, pickles needing code, and NaN/inf weights.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            raw: object = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            text = str(exc)
            if "Weights only load failed" in text and "GLOBAL" in text:
                raise _refusal(path, exc) from None
            first = text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (truncated, corrupt or another "
                f"format): {first}"
            ) from None
    state = _clean(_unwrap(raw, path))
    for key, tensor in state.items():
        # one cheap reduction per tensor; the exact test only when the sum is not finite
        if (
            tensor.is_floating_point()
            and not bool(torch.isfinite(tensor.sum()))
            and not bool(torch.isfinite(tensor).all())
        ):
            raise CheckpointError(f"{path}: tensor {key!r} contains NaN or inf values")
    return state


@functools.lru_cache(maxsize=64)
def _expected_shapes(spec: ArchSpec, num_classes: int) -> dict[str, tuple[int, ...]]:
    try:
        with torch.device("meta"):
            model = spec.builder(num_classes)
    except Exception:  # a custom builder that cannot run on the meta device
        model = spec.builder(num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _head_classes(state: Mapping[str, torch.Tensor], spec: ArchSpec) -> int | None:
    weight = state.get(spec.head + ".weight")
    # A Linear (K, C) or a 1x1 conv (K, C, 1, 1) head: K classes either way.
    return int(weight.shape[0]) if weight is not None and weight.ndim >= 2 else None


def guess_arch(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Registered architectures whose state-dict keys and shapes match ``state_dict`` exactly."""
    state = _clean(state_dict)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    found = []
    for name, spec in ARCHS.items():
        n = _head_classes(state, spec)
        if n is not None and _expected_shapes(spec, n) == shapes:
            found.append(name)
    return found


def _mismatch(path: Path, arch: str, state: Mapping[str, torch.Tensor], model: nn.Module) -> str:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k}: file {got[k]} vs model {expected[k]}"
        for k in expected
        if k in got and got[k] != expected[k]
    ]
    if not (missing or unexpected or shapes):
        return ""
    parts = [f"{path} does not match architecture {arch!r}:"]
    if missing:
        parts.append(f"missing keys {missing[:5]} ({len(missing)} in all);")
    if unexpected:
        parts.append(f"unexpected keys {unexpected[:5]} ({len(unexpected)} in all);")
    if shapes:
        parts.append(f"shape mismatches {shapes[:5]} ({len(shapes)} in all);")
    guesses = guess_arch(state)
    parts.append(f"its keys match {guesses}" if guesses else "it matches no registered arch")
    return " ".join(parts)


def _build_loaded(
    spec: ArchSpec, num_classes: int, state: Mapping[str, torch.Tensor], path: Path
) -> nn.Module:
    """``spec``'s model holding ``state`` (strict). Built on the meta device and the checkpoint
    tensors assigned (no random init, no copy); a real build when that leaves meta tensors.
    """
    try:
        with torch.device("meta"):
            model = spec.builder(num_classes)
    except Exception:  # a custom builder that cannot run on the meta device
        model = spec.builder(num_classes)
    problem = _mismatch(path, spec.name, state, model)
    if problem:
        raise CheckpointError(problem)
    model.load_state_dict(state, strict=True, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model = spec.builder(num_classes)  # e.g. non-persistent buffers: init them for real
        model.load_state_dict(state, strict=True)
    return model


def load_model(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    classes: Sequence[str] | None = None,
    multilabel: bool | None = None,
    device: str = "cpu",
) -> LoadedModel:
    """Rebuild the model saved at ``path``: eval mode, fp32, on ``device``.

    The card beside the file (:func:`card_path_for`) supplies arch/classes/preprocessing;
    explicit arguments override it. Without a card, ``classes`` must be given and ``arch`` is
    guessed from the keys when omitted (:func:`guess_arch`). The number of classes is read from
    the head weight. Every failure raises :class:`CheckpointError` naming the file.
    """
    path = Path(path)
    state = read_state_dict(path)
    card_file = card_path_for(path)
    card: ModelCard | None = None
    if card_file.is_file() and card_file != path:
        try:
            card = ModelCard.from_json(card_file.read_text(encoding="utf-8"))
        except (ValueError, TypeError, OSError) as exc:
            raise CheckpointError(f"{card_file}: unreadable model card: {exc}") from None
    if card is None and classes is None:
        hint = "" if arch else " (arch may be omitted: it is guessed from the keys)"
        raise CheckpointError(
            f"{path}: no model card at {card_file}; pass classes=[...] (class names in output "
            f"order){hint}"
        )

    arch_name = arch or (card.arch if card else None)
    if arch_name is None:
        candidates = guess_arch(state)
        if not candidates:
            raise CheckpointError(
                f"{path}: no model card and its keys match none of the registered architectures "
                f"(tried {list(ARCHS)}); pass arch=..."
            )
        arch_name = candidates[0]
    try:
        spec = get_arch(arch_name)
    except KeyError as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}") from None

    names = tuple(classes) if classes is not None else card.classes  # type: ignore[union-attr]
    n = _head_classes(state, spec)
    if n is not None and n != len(names):
        raise CheckpointError(
            f"{path}: the checkpoint's head ({spec.head}) has {n} outputs but {len(names)} class "
            f"names were given: {list(names)}"
        )
    model = _build_loaded(spec, n if n is not None else len(names), state, path)
    model = model.to(device=device, dtype=torch.float32).eval()

    if card is None:
        card = ModelCard(
            name=path.stem,
            arch=spec.name,
            classes=names,
            multilabel=bool(multilabel),
            input_size=spec.input_size,
            mean=spec.mean,
            std=spec.std,
            notes=f"No model card: built from arguments by load_model({path.name!r}).",
        )
    else:
        card = dataclasses.replace(
            card,
            arch=spec.name,
            classes=names,
            multilabel=card.multilabel if multilabel is None else multilabel,
        )
    return LoadedModel(model=model, card=card)


def save_model(model: nn.Module, card: ModelCard, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s state_dict (CPU, fp32; ``.safetensors`` by suffix) and its card beside.

    Returns the checkpoint path. Raises ValueError when the card's class count disagrees with
    the model head.
    """
    path = Path(path)
    parallel = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    inner = model.module if isinstance(model, parallel) else model
    inner = getattr(inner, "_orig_mod", inner)
    state = _clean(inner.state_dict())
    spec = ARCHS.get(card.arch)
    if spec is not None:
        n = _head_classes(state, spec)
        if n is not None and n != len(card.classes):
            raise ValueError(
                f"Cannot save {path}: model head {spec.head} has {n} outputs but the card lists "
                f"{len(card.classes)} classes"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    else:
        torch.save(state, tmp)
    os.replace(tmp, path)
    card_path_for(path).write_text(card.to_json() + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Preprocessing


class _Normalisation(Protocol):
    @property
    def input_size(self) -> int: ...
    @property
    def mean(self) -> tuple[float, float, float]: ...
    @property
    def std(self) -> tuple[float, float, float]: ...


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, RGB order


def _gray(image: np.ndarray, index: int) -> np.ndarray:
    """(H, W) float32 in [0, 1] from an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 image."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image {index} is a {type(image).__name__}, expected a numpy array")
    if image.dtype != np.uint8:
        raise ValueError(f"image {index} has dtype {image.dtype}; expected uint8")
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        if image.shape[2] == 1:
            image = image[..., 0]
        else:
            rgb = image[..., :3]
            if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all():
                image = rgb[..., 0]
            else:
                return (rgb.astype(np.float32) @ _LUMA) / np.float32(255.0)
    if image.ndim != 2 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image {index} has shape {image.shape}; expected (H, W) or (H, W, 3)")
    return image.astype(np.float32) / np.float32(255.0)


def preprocess(images: Sequence[np.ndarray], card_or_spec: ModelCard | ArchSpec) -> torch.Tensor:
    """Model input (B, 3, S, S) float32 from uint8 images, S = ``card_or_spec.input_size``.

    Each image, (H, W) grayscale or (H, W, 3) RGB (→ BT.601 gray), is scaled to [0, 1],
    resized to S×S (bilinear, antialiased, align_corners=False) and normalised with the
    card's mean/std. 1-channel images are fed by replicating the gray channel to the
    3-channel stem. Images may differ in size.
    """
    spec: _Normalisation = card_or_spec
    if len(images) == 0:
        raise ValueError("preprocess needs at least one image")
    size = int(spec.input_size)
    gray = torch.empty((len(images), 1, size, size), dtype=torch.float32)
    for i, image in enumerate(images):
        g = torch.from_numpy(np.ascontiguousarray(_gray(image, i)))[None, None]
        if tuple(g.shape[-2:]) != (size, size):
            g = F.interpolate(
                g, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        gray[i] = g[0]
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((gray.expand(-1, 3, -1, -1) - mean) / std).contiguous()


__all__ = [
    "ARCHS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AdaptiveConcatPool2d",
    "ArchSpec",
    "Calibration",
    "Candidate",
    "CheckpointError",
    "LoadedModel",
    "ModelCard",
    "Recommendation",
    "build_model",
    "card_path_for",
    "get_arch",
    "guess_arch",
    "load_model",
    "preprocess",
    "read_state_dict",
    "register_arch",
    "resolve_layer",
    "save_model",
]
