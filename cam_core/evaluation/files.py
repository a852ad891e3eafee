"""Explain image files into a folder: overlays (PNG), maps (.npy) and one ``explain.json`` of
class scores and localization figures against any VOC boxes found beside the images.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cam_core.data import IMAGE_SUFFIXES, Box, DataError, annotation_for, parse_voc, read_image
from cam_core.explain import Explainer
from cam_core.metrics import localization_scores
from cam_core.render import npy_bytes, panel_image, png_bytes

__all__ = ["ExplainedFiles", "explain_files", "image_files"]


@dataclass(frozen=True)
class ExplainedFiles:
    """What :func:`explain_files` wrote: ``out`` folder, images explained, maps written, and the
    ``explain.json`` content (``report``).
    """

    out: Path
    n_images: int
    n_maps: int
    report: dict[str, Any] = field(repr=False)


def image_files(items: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, folders expanded to their images (:data:`IMAGE_SUFFIXES`, sorted)."""
    paths: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(item)
    return paths


def explain_files(
    explainer: Explainer,
    images: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    methods: Sequence[str],
    *,
    layers: str | None = None,
    classes: Sequence[str] | None = None,
    flip_smooth: bool = False,
    checkpoint: str = "",
    warn: Callable[[str], None] | None = None,
) -> ExplainedFiles:
    """Explain every image of ``images`` (files or folders) and write the results to ``out``.

    ``classes`` are the class names to explain in every image (None: the predicted ones);
    ``layers`` as :meth:`Explainer.explain`. Per map ``<stem>__<class>__<method>.png`` (overlay
    with that class's GT boxes) and ``.npy`` (float32 map at image resolution); ``explain.json``
    holds ``checkpoint``, the classes, methods, and per image its scores and maps (localization
    figures where the image has GT boxes of the class, else None). An unreadable image, or an
    unreadable annotation, is reported through ``warn`` and skipped (its boxes only).
    Raises ValueError naming a class the model does not have.
    """
    card = explainer.card
    if classes is not None:
        unknown = [c for c in classes if c not in card.classes]
        if unknown:
            raise ValueError(f"unknown class(es) {unknown}; the model has {list(card.classes)}")
    note = warn or (lambda _msg: None)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict[str, Any]] = {}
    arrays: list[np.ndarray] = []
    names: list[Path] = []
    boxes: list[tuple[Box, ...]] = []
    for p in image_files(images):
        try:
            arrays.append(read_image(p))
        except DataError as exc:
            entries[p.name] = {"error": str(exc)}
            note(f"skipped: {exc}")
            continue
        names.append(p)
        xml = annotation_for(p)
        try:
            boxes.append(parse_voc(xml, image_size=arrays[-1].shape[:2]).boxes if xml else ())
        except DataError as exc:
            note(f"no GT boxes: {exc}")
            boxes.append(())
    targets = None
    if classes is not None:
        targets = [[card.classes.index(c) for c in classes]] * len(arrays)
    exp = explainer.explain(
        arrays, list(methods), targets=targets, layers=layers, flip_smooth=flip_smooth
    )
    for r in exp.results:
        p = names[r.image]
        stem = f"{p.stem}__{r.class_name}__{r.method}"
        gt = tuple(b for b in boxes[r.image] if b.cls == r.class_name)
        (folder / f"{stem}.png").write_bytes(
            png_bytes(panel_image(arrays[r.image], r.cam, gt_boxes=gt))
        )
        (folder / f"{stem}.npy").write_bytes(npy_bytes(r.cam))
        scores = dict(zip(card.classes, map(float, exp.probs[r.image]), strict=True))
        entry = entries.setdefault(p.name, {"scores": scores, "maps": []})
        entry["maps"].append(
            {
                "class": r.class_name,
                "method": r.method,
                "layer": r.layer,
                "flip_smooth": flip_smooth,
                "strength": r.strength,
                "overlay": f"{stem}.png",
                "localization": localization_scores(r.cam, gt) if gt else None,
            }
        )
    report = {
        "checkpoint": checkpoint,
        "classes": list(card.classes),
        "methods": list(methods),
        "images": entries,
    }
    (folder / "explain.json").write_text(json.dumps(report, indent=2, default=str))
    return ExplainedFiles(folder, len(arrays), len(exp.results), report)
