"""Maps again for a few listed rows: evaluation rows drop their maps, so galleries, the diff's
side-by-side view and the annotation export recompute the handful they show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cam_core.data import Box, Sample, read_image, rescale_boxes
from cam_core.explain import Explainer

__all__ = ["RowMap", "maps_for"]


@dataclass(frozen=True)
class RowMap:
    """One (sample, class) explained again: the gray image, its map at image resolution (float32,
    [0, 1]) and the class's GT boxes at that resolution.
    """

    sample: Sample
    cls: str
    image: np.ndarray
    cam: np.ndarray
    boxes: tuple[Box, ...]


def maps_for(
    explainer: Explainer,
    pairs: Sequence[tuple[Sample, str]],
    method: str,
    layer: str | None = None,
    *,
    flip_smooth: bool = False,
) -> list[RowMap]:
    """The ``method`` map at ``layer`` of each (sample, class) in ``pairs``, in order (one engine
    call). ValueError naming a class the model lacks; the engine's errors otherwise.
    """
    classes = explainer.card.classes
    for _, cls in pairs:
        if cls not in classes:
            raise ValueError(f"class {cls!r} is not one of the model's classes {list(classes)}")
    if not pairs:
        return []
    images = [read_image(s.path) for s, _ in pairs]
    targets = [[classes.index(c)] for _, c in pairs]
    exp = explainer.explain(
        images, [method], targets=targets, layers=layer, flip_smooth=flip_smooth
    )
    out = []
    for i, ((sample, cls), image) in enumerate(zip(pairs, images, strict=True)):
        shape = image.shape[:2]
        boxes = sample.boxes_for(cls)
        if sample.size not in (None, shape):
            boxes = rescale_boxes(boxes, sample.size, shape)
        cam = exp.get(i, cls, method).cam
        out.append(RowMap(sample, cls, image, cam, tuple(boxes)))
    return out
