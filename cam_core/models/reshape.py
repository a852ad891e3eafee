"""Activations as (B, C, h, w) maps: token sequences and channels-last tensors reshaped per family.

A CAM needs a layer's output as a (B, C, h, w) feature map. Convolutional networks give that
directly; vision transformers give (B, N, C) tokens (class and distillation tokens first, then
the patch grid row by row) and Swin-style networks give channels-last (B, h, w, C) tensors.
A :class:`Family` says once, for a whole model class, how its outputs read:

>>> register_family("my_pkg.nets.MyViT", Family("my-vit", patch=16))   # doctest: +SKIP

:func:`layout_of` turns one output shape into a :class:`Layout` (the rule for that output and
its inverse, used to hand a modified map back to the network); the engine applies it inside its
capture hooks, so every method sees (B, C, h, w). Without a registered family the layout is
inferred from the shape and the input size (tokens: the grid that fits the input's aspect with
at most :data:`MAX_PREFIX` leading tokens; 4-D: channels-first unless only channels-last fits).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

MAX_PREFIX = 8
"""Most leading non-patch tokens (class, distillation, register tokens) a token layout drops."""


class LayoutError(ValueError):
    """An output cannot be read as a (B, C, h, w) map; the message says why (shape, input)."""


@dataclass(frozen=True)
class Family:
    """How a model family's activations read. ``patch``: the token grid's stride in input
    pixels (an int, or a function of the model; None = inferred from the token count);
    ``channels_last``: 4-D outputs are (B, h, w, C) where the shape allows both readings.
    """

    name: str
    patch: int | Callable[[nn.Module], int] | None = None
    channels_last: bool = False

    def patch_of(self, model: nn.Module) -> int | None:
        """The patch stride for ``model`` (None when the family leaves it to inference)."""
        return self.patch(model) if callable(self.patch) else self.patch


@dataclass(frozen=True)
class Layout:
    """How one output becomes a (B, C, h, w) map. ``kind``: ``"nchw"``, ``"nhwc"`` or
    ``"tokens"`` (``prefix`` leading tokens dropped, the rest a ``grid`` of (h, w) patches).
    """

    kind: str
    grid: tuple[int, int]
    prefix: int = 0

    def to_map(self, t: torch.Tensor) -> torch.Tensor:
        """The output ``t`` as a contiguous (B, C, h, w) map (a copy unless already NCHW)."""
        if self.kind == "nchw":
            return t
        if self.kind == "nhwc":
            return t.permute(0, 3, 1, 2).contiguous()
        h, w = self.grid
        patches = t[:, self.prefix :].reshape(t.shape[0], h, w, t.shape[-1])
        return patches.permute(0, 3, 1, 2).contiguous()

    def to_output(self, m: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A (B', C, h, w) map back in the output's own layout; dropped tokens come from
        ``like`` (the original output, broadcast over B' when it has batch 1).
        """
        if self.kind == "nchw":
            return m.clone()
        if self.kind == "nhwc":
            return m.permute(0, 2, 3, 1).contiguous()
        tokens = m.flatten(2).transpose(1, 2)
        if not self.prefix:
            return tokens.contiguous()
        head = like[:, : self.prefix].expand(m.shape[0], -1, -1)
        return torch.cat([head, tokens], dim=1)

    def describe(self) -> str:
        """A few words: "tokens (1 dropped) on a 14×14 grid", "channels-last 7×7" …"""
        h, w = self.grid
        if self.kind == "tokens":
            return f"tokens ({self.prefix} dropped) on a {h}×{w} grid"
        return f"{'channels-last' if self.kind == 'nhwc' else 'feature map'} {h}×{w}"


_FAMILIES: dict[str, Family] = {}


def _key(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_family(cls: type | str, family: Family) -> Family:
    """Declare ``family`` for a model class (or its ``module.QualName``) and its subclasses."""
    _FAMILIES[cls if isinstance(cls, str) else _key(cls)] = family
    return family


def family_of(model: nn.Module) -> Family | None:
    """The family registered for ``model``'s class or its nearest registered base class."""
    for cls in type(model).__mro__:
        family = _FAMILIES.get(_key(cls))
        if family is not None:
            return family
    return None


def _patch_size(attr: str) -> Callable[[nn.Module], int]:
    def get(model: nn.Module) -> int:
        value = model
        for part in attr.split("."):
            value = getattr(value, part)
        return int(value[0] if isinstance(value, tuple | list) else value)

    return get


# The families the project knows; a model of another class gets its layout inferred.
TIMM_VIT = register_family(
    "timm.models.vision_transformer.VisionTransformer",  # ViT, DeiT (distilled: 2 prefix tokens)
    Family("timm ViT/DeiT", patch=_patch_size("patch_embed.patch_size")),
)
register_family(
    "timm.models.swin_transformer.SwinTransformer", Family("timm Swin", channels_last=True)
)
register_family(
    "timm.models.swin_transformer_v2.SwinTransformerV2", Family("timm Swin V2", channels_last=True)
)
register_family("timm.models.convnext.ConvNeXt", Family("timm ConvNeXt"))
register_family("timm.models.efficientnet.EfficientNet", Family("timm EfficientNet"))
register_family(
    "torchvision.models.vision_transformer.VisionTransformer",
    Family("torchvision ViT", patch=_patch_size("patch_size")),
)
register_family(
    "torchvision.models.swin_transformer.SwinTransformer",
    Family("torchvision Swin", channels_last=True),
)


def fits_grid(h: int, w: int, size: tuple[int, int]) -> bool:
    """(h, w) is the grid of ``size`` at one integer stride (ceil for padded edges)."""
    H, W = size
    if not (1 <= h <= H and 1 <= w <= W):
        return False
    return any(math.ceil(H / s) == h and math.ceil(W / s) == w for s in range(1, H // h + 2))


def _fit(side: int, patch: int) -> int:
    return max(patch, side // patch * patch)


def token_grid(n: int, size: tuple[int, int], patch: int | None) -> tuple[int, int, int]:
    """(prefix, h, w) for ``n`` tokens of an input of ``size`` (H, W): with ``patch`` the grid
    is ⌈H/patch⌉ × ⌈W/patch⌉; without, the grid of one integer stride that leaves the fewest
    leading tokens. LayoutError when no grid fits.
    """
    H, W = size
    if patch is not None:
        if H % patch or W % patch:
            raise LayoutError(
                f"input size {H}×{W} does not fit the {patch}-px patch grid: use multiples "
                f"of {patch} (e.g. {_fit(H, patch)}×{_fit(W, patch)})"
            )
        h, w = H // patch, W // patch
        prefix = n - h * w
        if not 0 <= prefix <= MAX_PREFIX:
            raise LayoutError(
                f"{n} tokens do not hold the {h}×{w} patch grid of a {H}×{W} input "
                f"({patch}-px patches): the model was built for another input size"
            )
        return prefix, h, w
    for prefix in range(0, min(MAX_PREFIX, n - 1) + 1):
        grid = n - prefix
        for s in range(1, H + 1):
            h, w = math.ceil(H / s), math.ceil(W / s)
            if h * w < grid:
                break
            if h * w == grid:
                return prefix, h, w
    raise LayoutError(
        f"{n} tokens are no patch grid of a {H}×{W} input (with up to {MAX_PREFIX} class or "
        "distillation tokens): pick a block of the network, or give the input size it was built for"
    )


def layout_of(
    shape: tuple[int, ...], size: tuple[int, int], family: Family | None, patch: int | None = None
) -> Layout:
    """The layout of an output of ``shape`` for a (H, W) = ``size`` input. 3-D: tokens; 4-D:
    channels-first, or channels-last where only that fits (or both do and the family says so).
    LayoutError naming the shape otherwise.
    """
    if len(shape) == 3:
        prefix, h, w = token_grid(shape[1], size, patch)
        return Layout("tokens", (h, w), prefix)
    if len(shape) == 4:
        # channels-first unless its (h, w) cannot be the input's (a 768-wide map of a 224-px
        # input): valid convolutions give grids no single stride explains, so no stride test
        H, W = size
        nchw = 1 <= shape[2] <= H and 1 <= shape[3] <= W
        nhwc = fits_grid(shape[1], shape[2], size)
        if nhwc and (not nchw or (family is not None and family.channels_last)):
            return Layout("nhwc", (shape[1], shape[2]))
        if nchw:
            return Layout("nchw", (shape[2], shape[3]))
    raise LayoutError(
        f"outputs {tuple(shape)}, not a (B, C, h, w) feature map of a {size[0]}×{size[1]} "
        "input (nor (B, h, w, C) or (B, tokens, C)); pick a block of the network"
    )


class Layouts:
    """The layouts of one model's layers for one input size, worked out once per output shape."""

    def __init__(self, model: nn.Module, size: tuple[int, int]) -> None:
        self.family = family_of(model)
        self.patch = self.family.patch_of(model) if self.family is not None else None
        self.size = size
        self._seen: dict[tuple[int, ...], Layout] = {}

    def of(self, shape: tuple[int, ...]) -> Layout:
        """The layout of an output of ``shape`` (LayoutError when it is no feature map)."""
        key = tuple(shape[1:])
        if key not in self._seen:
            self._seen[key] = layout_of(tuple(shape), self.size, self.family, self.patch)
        return self._seen[key]


def check_input_size(model: nn.Module, size: tuple[int, int]) -> None:
    """LayoutError when ``size`` does not fit ``model``'s patch grid (a patch family only)."""
    family = family_of(model)
    patch = family.patch_of(model) if family is not None else None
    if patch is not None and (size[0] % patch or size[1] % patch):
        token_grid(1, size, patch)  # raises with the message naming the patch size


def reshape_transform(
    model: nn.Module, size: tuple[int, int]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """pytorch-grad-cam's ``reshape_transform`` for ``model`` at input ``size``: our layout,
    for the library methods (kind "library") to see the same maps. A tensor that is no feature
    map (FullGrad hooks every bias layer) passes unchanged.
    """
    layouts = Layouts(model, size)

    def transform(t: torch.Tensor) -> torch.Tensor:
        try:
            return layouts.of(tuple(t.shape)).to_map(t)
        except LayoutError:
            return t

    return transform
