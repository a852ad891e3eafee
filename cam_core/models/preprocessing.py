"""Model input from uint8 images: gray, resized, normalised with the card's statistics.

NEU-DET images are grayscale; 1-channel images are fed by replicating the gray channel to the
3-channel stem, so every registered architecture keeps its stock stem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from cam_core.models.card import ModelCard
from cam_core.models.registry import ArchSpec


class _Normalisation(Protocol):
    @property
    def input_size(self) -> int | tuple[int, int]: ...
    @property
    def mean(self) -> tuple[float, ...]: ...
    @property
    def std(self) -> tuple[float, ...]: ...


def input_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """(height, width) of an input size given as an int (square) or a pair."""
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


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
    """Model input (B, C, H, W) float32 from uint8 images: (H, W) = ``card_or_spec.input_size``
    (an int: square), C = its ``in_chans`` (3 when it has none).

    Each image, (H, W) grayscale or (H, W, 3) RGB (→ BT.601 gray), is scaled to [0, 1],
    resized to H×W (bilinear, antialiased, align_corners=False) and normalised with the
    card's mean/std. A 3-channel model gets the gray channel replicated to its 3-channel stem;
    a 1-channel model gets it as is. Images may differ in size.
    """
    spec: _Normalisation = card_or_spec
    if len(images) == 0:
        raise ValueError("preprocess needs at least one image")
    size = input_hw(spec.input_size)
    chans = int(getattr(spec, "in_chans", 3))
    gray = torch.empty((len(images), 1, *size), dtype=torch.float32)
    for i, image in enumerate(images):
        g = torch.from_numpy(np.ascontiguousarray(_gray(image, i)))[None, None]
        if tuple(g.shape[-2:]) != size:
            g = F.interpolate(g, size=size, mode="bilinear", align_corners=False, antialias=True)
        gray[i] = g[0]
    mean = torch.tensor(spec.mean[:chans], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec.std[:chans], dtype=torch.float32).view(1, -1, 1, 1)
    return ((gray.expand(-1, chans, -1, -1) - mean) / std).contiguous()
