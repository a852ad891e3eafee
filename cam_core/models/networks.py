"""The networks this project defines: fastai's head layout and the local-evidence nets.

Pure ``torch``: no registry, no checkpoints. :mod:`cam_core.models.registry` names them (with
their CAM layers and preprocessing) so a checkpoint plus its card is enough to rebuild one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torchvision.models as tvm
from torch import nn


def torchvision_builder(fn: Callable[..., nn.Module]) -> Callable[[int], nn.Module]:
    """``build(num_classes)`` for a torchvision constructor: no pretrained weights."""

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


def fastai_resnet_builder(fn: Callable[..., nn.Module], nf: int) -> Callable[[int], nn.Module]:
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
        """(B, C, h, w) the trunk's (and head's) features of input (B, 3, H, W)."""
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


class ConvStemEmbed(nn.Module):
    """Early-convolution patch embedding (Xiao et al. 2021, "Early Convolutions Help
    Transformers See Better"): ``log2(patch_size)`` 3×3 stride-2 conv-BN-ReLU layers, then a
    1×1 projection to ``embed_dim``; (B, C_in, H, W) → (B, (H/p)·(W/p), embed_dim) tokens.

    Speaks timm's ``PatchEmbed`` interface (``img_size``, ``patch_size`` = the stem's total
    stride, ``grid_size``, ``num_patches``, ``feat_ratio``), so timm's ``VisionTransformer``
    takes it as ``embed_layer`` and a token layout reads its grid as input size / patch size.
    """

    def __init__(
        self,
        img_size: int = 128,
        patch_size: int = 8,
        in_chans: int = 3,
        embed_dim: int = 128,
        bias: bool = True,
        widths: tuple[int, ...] = (32, 64, 128),
        **_timm_args: object,
    ) -> None:
        super().__init__()
        if 2 ** len(widths) != patch_size or img_size % patch_size:
            raise ValueError(
                f"ConvStemEmbed: {len(widths)} stride-2 layers give patch {2 ** len(widths)}, "
                f"asked {patch_size}; img_size {img_size} must be a multiple of it"
            )
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        layers: list[nn.Module] = []
        c = in_chans
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True)]
            c = w
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c, embed_dim, 1, bias=bias)

    def feat_ratio(self, as_scalar: bool = True) -> int | tuple[int, int]:
        """The stem's stride (timm asks it for the feature info)."""
        return self.patch_size[0] if as_scalar else self.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) at ``img_size`` → (B, N, embed_dim) tokens, row by row."""
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(
                f"input {tuple(x.shape[-2:])} px: this model takes {self.img_size} "
                "(its position embedding is fixed to that grid)"
            )
        return self.proj(self.stem(x)).flatten(2).transpose(1, 2)


def convstem_vit(
    num_classes: int,
    img_size: int = 128,
    patch_size: int = 8,
    embed_dim: int = 96,
    depth: int = 4,
    num_heads: int = 3,
) -> nn.Module:
    """A small hybrid vision transformer for NEU-DET: :class:`ConvStemEmbed` (3 conv layers of
    24, 48, 96 channels, stride 8: a 128-px input is a 16×16 token grid), ``depth`` timm ViT
    blocks (pre-norm, ``num_heads`` heads, MLP ratio 3), no class token: the tokens are
    averaged, LayerNorm'd and classified by one Linear (``head``), so every block's patch tokens
    reach the logits and a gradient CAM of the last block is defined. timm's
    ``VisionTransformer``, no weights; 0.46 M parameters for 6 classes (1.9 MB).
    """
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        num_classes=num_classes,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=3.0,
        class_token=False,
        global_pool="avg",
        embed_layer=functools.partial(ConvStemEmbed, widths=(24, 48, 96)),
    )
