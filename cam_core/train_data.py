"""What the training loop feeds on: images with their boxes, targets, augmentation, mosaics.

Box moves go through :class:`~cam_core.data.Box` methods (``flipped``, ``shifted``,
``clipped``) and :func:`~cam_core.data.rescale_boxes`; images are (H, W) uint8 grayscale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cam_core.data import Box, Sample, load_dataset, read_image, rescale_boxes, split_samples
from cam_core.metrics import box_mask


@dataclass
class _Item:
    """One training image: (H, W) uint8 pixels, its boxes and file class (None for a mosaic)."""

    image: np.ndarray
    boxes: tuple[Box, ...]
    label: str | None


def _load_items(samples: Sequence[Sample]) -> list[_Item]:
    return [_Item(read_image(s.path), s.boxes, s.label) for s in samples]


def _targets(item: _Item, classes: tuple[str, ...], multilabel: bool) -> np.ndarray:
    """(K,) float32 0/1: the box classes (multi-label) or the file class, or the box classes
    when there is no file class.
    """
    y = np.zeros(len(classes), np.float32)
    names = {b.cls for b in item.boxes} if multilabel else set()
    if not names and item.label is not None:
        names = {item.label}
    for n in names:
        if n in classes:
            y[classes.index(n)] = 1.0
    return y


def box_targets(
    boxes: Sequence[Box],
    classes: Sequence[str],
    image_shape: tuple[int, int],
    map_shape: tuple[int, int],
) -> np.ndarray:
    """(K, h, w) float32: the fraction of each score-map cell covered by boxes of class k
    (``image_shape`` = (H, W) the boxes are annotated on; boxes of other classes are ignored).
    """
    out = np.zeros((len(classes), *map_shape), np.float32)
    for k, c in enumerate(classes):
        own = [b for b in boxes if b.cls == c]
        if own:
            mask = box_mask(own, image_shape).astype(np.float32)
            out[k] = cv2.resize(mask, (map_shape[1], map_shape[0]), interpolation=cv2.INTER_AREA)
    return out


def augment(
    image: np.ndarray, boxes: tuple[Box, ...], rng: np.random.Generator
) -> tuple[np.ndarray, tuple[Box, ...]]:
    """Random horizontal/vertical flips and a reflect-padded shift of up to 12 % per axis; boxes
    follow the pixels (and are clipped to the image; boxes shifted out entirely are dropped).
    """
    h, w = image.shape
    out = image
    bx = list(boxes)
    if rng.random() < 0.5:
        out = out[:, ::-1]
        bx = [b.flipped(width=w) for b in bx]
    if rng.random() < 0.5:
        out = out[::-1, :]
        bx = [b.flipped(height=h) for b in bx]
    dx, dy = (int(v) for v in rng.integers(-int(0.12 * w), int(0.12 * w) + 1, size=2))
    if dx or dy:
        pad = cv2.copyMakeBorder(
            np.ascontiguousarray(out), abs(dy), abs(dy), abs(dx), abs(dx), cv2.BORDER_REFLECT_101
        )
        out = pad[abs(dy) - dy : abs(dy) - dy + h, abs(dx) - dx : abs(dx) - dx + w]
        bx = [b.shifted(dx, dy).clipped(w, h) for b in bx]
        bx = [b for b in bx if b.area > 0]
    return np.ascontiguousarray(out), tuple(bx)


def mosaic(
    parts: Sequence[tuple[np.ndarray, tuple[Box, ...]]], size: int = 200
) -> tuple[np.ndarray, tuple[Box, ...]]:
    """2×2 mosaic of four (image, boxes): part k goes to quadrant (row k // 2, col k % 2), each
    resized to size/2; boxes are rescaled and shifted with it.
    """
    half = size // 2
    canvas = np.zeros((size, size), np.uint8)
    out: list[Box] = []
    for k, (img, boxes) in enumerate(parts):
        r, c = divmod(k, 2)
        canvas[r * half : (r + 1) * half, c * half : (c + 1) * half] = cv2.resize(
            img, (half, half), interpolation=cv2.INTER_AREA
        )
        out += [
            b.shifted(c * half, r * half) for b in rescale_boxes(boxes, img.shape, (half, half))
        ]
    return canvas, tuple(out)


def _mosaic_item(items: Sequence[_Item], rng: np.random.Generator) -> _Item:
    """Four images of four different file classes (when there are that many) in a 2×2 mosaic;
    an image without boxes brings a box over its whole area for its file class.
    """
    by_class: dict[str | None, list[int]] = {}
    for i, it in enumerate(items):
        by_class.setdefault(it.label, []).append(i)
    keys = list(by_class)
    chosen = rng.choice(len(keys), size=min(4, len(keys)), replace=False)
    picks = [by_class[keys[k]][int(rng.integers(len(by_class[keys[k]])))] for k in chosen]
    while len(picks) < 4:
        picks.append(int(rng.integers(len(items))))
    parts = []
    for i in picks:
        it = items[i]
        boxes = it.boxes or ((Box(it.label, 0, 0, *it.image.shape[::-1]),) if it.label else ())
        parts.append((it.image, boxes))
    img, boxes = mosaic(parts, size=items[0].image.shape[0])
    return _Item(img, boxes, None)


def val_mosaics(items: Sequence[_Item], n: int = 200, seed: int = 12345) -> list[_Item]:
    """``n`` held-out 2×2 mosaics of validation images (fixed seed: the same set every run)."""
    rng = np.random.default_rng(seed)
    return [_mosaic_item(items, rng) for _ in range(n)]


def write_mosaic_folder(
    data: str | Path, out_dir: str | Path, split: str = "test", n: int = 200, seed: int = 12345
) -> Path:
    """Write ``n`` 2×2 mosaics of ``split`` images (never trained on when ``split`` is val/test)
    as a VOC folder (``IMAGES/mosaic_<k>.png`` + ``ANNOTATIONS/mosaic_<k>.xml``, boxes carried).

    Evaluate per-class maps on it with ``--target-rule box-classes``: every class present in a
    mosaic is explained and scored against its own boxes only.
    """
    from cam_core.synth import voc_xml

    samples = split_samples(load_dataset(data).samples)[split]
    if not samples:
        raise ValueError(f"{str(data)!r}: the {split!r} split is empty")
    items = _load_items(samples)
    out = Path(out_dir)
    (out / "IMAGES").mkdir(parents=True, exist_ok=True)
    (out / "ANNOTATIONS").mkdir(parents=True, exist_ok=True)
    for k, it in enumerate(val_mosaics(items, n=n, seed=seed)):
        name = f"mosaic_{k:04d}.png"
        if not cv2.imwrite(str(out / "IMAGES" / name), it.image):
            raise OSError(f"could not write {out / 'IMAGES' / name}")
        (out / "ANNOTATIONS" / f"mosaic_{k:04d}.xml").write_bytes(
            voc_xml(name, it.image.shape, it.boxes)
        )
    return out
