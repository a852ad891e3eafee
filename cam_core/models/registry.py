"""Architecture registry and layer paths.

An :class:`ArchSpec` holds what the CAM engine needs to know about a network as *strings*
(target layers, head path), so a checkpoint plus a small JSON card is enough to rebuild it.
Every built-in architecture is registered here: torchvision's, fastai's ``vision_learner``
layout and this project's NEU-DET networks (:mod:`cam_core.models.networks`).
:func:`resolve_layer` turns a dotted layer path into the submodule.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

import torchvision.models as tvm
from torch import nn

from cam_core.models.networks import (
    LocalEvidenceNet,
    convstem_vit,
    fastai_resnet_builder,
    torchvision_builder,
)

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
    input_size: int | tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    head: str
    gap_linear: bool
    description: str
    in_chans: int = 3

    def __post_init__(self) -> None:
        if not self.target_layers:
            raise ValueError(f"ArchSpec {self.name!r}: target_layers is empty")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"ArchSpec {self.name!r}: mean/std need 3 values each")
        sizes = (self.input_size,) if isinstance(self.input_size, int) else self.input_size
        if len(sizes) not in (1, 2) or min(sizes) <= 0:
            raise ValueError(f"ArchSpec {self.name!r}: input_size {self.input_size} must be > 0")


ARCHS: dict[str, ArchSpec] = {}


def register_arch(spec: ArchSpec) -> ArchSpec:
    """Add ``spec`` to :data:`ARCHS`; a name already registered raises ValueError."""
    if spec.name in ARCHS:
        raise ValueError(f"Architecture {spec.name!r} is already registered")
    ARCHS[spec.name] = spec
    return spec


_RESOLVERS: dict[str, Callable[[str], ArchSpec]] = {}
_RESOLVED: dict[str, ArchSpec] = {}


def register_resolver(prefix: str, resolve: Callable[[str], ArchSpec]) -> None:
    """Names ``"<prefix>/…"`` (``timm/vit_small_patch16_224``) are specs made on first use by
    ``resolve(name)`` (KeyError naming the name when it is unknown), then kept.
    """
    _RESOLVERS[prefix] = resolve


def get_arch(name: str) -> ArchSpec:
    """The registered spec called ``name`` (or resolved: :func:`register_resolver`); KeyError
    listing the valid names otherwise.
    """
    if name in ARCHS:
        return ARCHS[name]
    prefix = name.split("/", 1)[0] if isinstance(name, str) and "/" in name else None
    if prefix in _RESOLVERS:
        if name not in _RESOLVED:
            _RESOLVED[name] = _RESOLVERS[prefix](name)
        return _RESOLVED[name]
    families = "".join(f", or '{p}/<name>'" for p in sorted(_RESOLVERS))
    raise KeyError(f"Unknown architecture {name!r}; valid: {sorted(ARCHS)}{families}") from None


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised ``arch`` with ``num_classes`` outputs (no pretrained weights)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return get_arch(arch).builder(num_classes)


def _register_builtin() -> None:
    def tv(
        name: str, layers: tuple[str, ...], head: str, gap_linear: bool, description: str
    ) -> ArchSpec:
        return ArchSpec(
            name=name,
            builder=torchvision_builder(getattr(tvm, name)),
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
                builder=fastai_resnet_builder(getattr(tvm, name), nf),
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
register_arch(
    ArchSpec(
        name="convstem_vit",
        builder=convstem_vit,
        target_layers=("blocks.3", "blocks.1", "patch_embed.stem"),
        input_size=128,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        head="head",
        gap_linear=False,
        description="hybrid ViT for NEU-DET: 3-conv stem (stride 8, 16x16 tokens at 128 px) + "
        "4 timm ViT blocks (dim 96, 3 heads), mean-pooled tokens + LayerNorm + Linear.",
    )
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
