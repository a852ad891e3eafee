"""Demo mode's slides: one image of a chosen set at a time, large, with the one sentence a meeting
needs — what the model predicted, and whether its evidence lies on the defect.

A :class:`Slide` holds two square RGB panels at projector size (the image with its GT boxes, the
map of the predicted class over it with that class's boxes) and the words around them. The map
comes through the app's map cache (:func:`cam_core.mapcache.compute_maps`), so stepping back to
an image costs nothing. No Streamlit here; ``pages/present.py`` draws it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from cam_core.data import Sample, rescale_boxes
from cam_core.explain import Explainer
from cam_core.mapcache import MapCache, class_scores, compute_maps
from cam_core.metrics import map_figures
from cam_core.render import draw_boxes, panel_image, to_rgb
from cam_core.uploads import ImageItem
from cam_core.vocabulary import method_name

__all__ = ["PANEL_PX", "Slide", "default_selection", "make_slide"]

PANEL_PX = 560
"""Side of each panel in pixels: two of them and their words fit a 1280 x 720 projector."""


@dataclass(frozen=True)
class Slide:
    """One image on screen: ``gt`` and ``heat`` (PANEL_PX square RGB uint8), the ``headline``
    (image, predicted class and its probability), the ``verdict`` (evidence on / off the defect,
    or no box to judge by), ``figures`` (a short line of numbers) and ``error`` (a map that could
    not be computed: ``heat`` is then the plain image).
    """

    name: str
    gt: np.ndarray
    heat: np.ndarray
    headline: str
    verdict: str
    on_defect: bool | None
    figures: str
    error: str = ""


def default_selection(samples: Sequence[Sample], per_class: int = 1, most: int = 8) -> list[str]:
    """Stems to present when none were chosen: the first annotated image of each class (file
    class, else box class), ``per_class`` each, at most ``most``.
    """
    seen: dict[str, int] = {}
    out: list[str] = []
    for s in samples:
        cls = s.label or (s.boxes[0].cls if s.boxes else None)
        if cls is None or not s.boxes or seen.get(cls, 0) >= per_class:
            continue
        seen[cls] = seen.get(cls, 0) + 1
        out.append(s.stem)
        if len(out) >= most:
            break
    return out or [s.stem for s in samples[:most]]


def _big(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (side, round(h * side / w)), interpolation=cv2.INTER_CUBIC)


def make_slide(
    explainer: Explainer,
    model_id: str,
    item: ImageItem,
    method: str,
    layer: str,
    cache: MapCache,
    *,
    flip_smooth: bool = False,
    threshold: float = 0.5,
    side: int = PANEL_PX,
) -> Slide:
    """The slide of ``item``: its predicted class's ``method`` map at ``layer`` (cached in
    ``cache``), judged by the pointing game against that class's GT boxes; panels ``side`` px
    wide.
    """
    card = explainer.card
    probs = class_scores(explainer, model_id, item, cache)
    ci = int(np.argmax(probs))
    cls = card.classes[ci]
    h, w = item.image.shape[:2]
    img = _big(item.image, side)
    size = img.shape[:2]
    boxes = rescale_boxes(item.boxes, (h, w), size)
    own = tuple(b for b in boxes if b.cls == cls)
    gt = draw_boxes(img, boxes, thickness=3)
    headline = f"{item.name}: predicted {cls} (p = {float(probs[ci]):.2f})"
    truth = sorted({b.cls for b in item.boxes})
    if truth:
        headline += f" · boxes: {', '.join(truth)}"
    maps, errors = compute_maps(
        explainer, model_id, item, [method], [ci], layer, cache, flip_smooth=flip_smooth
    )
    if (method, ci) not in maps:
        error = errors.get(method, f"{method}: no map")
        return Slide(item.name, gt, to_rgb(img), headline, "no map", None, "", error)
    result = maps[(method, ci)]
    cam = cv2.resize(result.cam.astype(np.float32), (size[1], size[0]), cv2.INTER_LINEAR)
    heat = panel_image(img, np.clip(cam, 0, None), gt_boxes=own)
    scored = map_figures(
        result.cam, tuple(b for b in item.boxes if b.cls == cls), threshold=threshold
    )
    hit = scored.scores.get("pointing")
    name = method_name(method)
    if hit is None:
        verdict = f"No {cls} box in this image: {name}'s evidence cannot be checked"
    elif hit:
        verdict = f"{name}: the evidence for {cls} lies ON the defect"
    else:
        verdict = f"{name}: the evidence for {cls} lies OFF the defect"
    energy = scored.scores.get("energy")
    figures = f"{name} @ {result.layer}" + (
        f" · energy in the boxes {energy:.0%}" if energy is not None else ""
    )
    return Slide(
        item.name, gt, heat, headline, verdict, None if hit is None else bool(hit), figures
    )
