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
