"""Annotation QA: images where a confident, correct model's evidence is not where the boxes say,
and map-derived boxes exported as VOC XML for relabelling (never over the user's files).

A *candidate* is an evaluation row of one (method, layer) whose prediction is correct with a
class score of at least ``confidence`` and whose map either has no box of its class to land in
(``reason`` "no box of the class") or peaks outside every box of the class (pointing game false:
"evidence outside every box"). Candidates are ranked by ``suspicion`` = score × (1 − energy in
the boxes) (score alone without boxes): confident predictions whose map energy lies off the
boxes first.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from lxml import etree

from cam_core import metrics as M
from cam_core.data import Box
from cam_core.review.maps import RowMap
from cam_core.synth import voc_xml

__all__ = [
    "ExportError",
    "map_boxes",
    "qa_candidates",
    "voc_bytes",
    "voc_zip",
    "write_voc_export",
]

REASON_NO_BOX = "no box of the class"
REASON_OUTSIDE = "evidence outside every box"


class ExportError(ValueError):
    """An export target that would overwrite something (or cannot be written), named."""


def qa_candidates(
    rows: pd.DataFrame, method: str, layer: str, confidence: float = 0.9
) -> pd.DataFrame:
    """Candidate rows of (``method``, ``layer``), most suspicious first: stem, class, score,
    n_boxes, pointing, energy, reason, suspicion. ValueError for a confidence outside [0, 1].
    """
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must be a fraction in [0, 1], got {confidence!r}")
    mine = rows[(rows["method"] == method) & (rows["layer"] == layer) & rows["error"].isna()]
    mine = mine[mine["correct"].notna()]
    mine = mine[mine["correct"].astype(bool) & (mine["score"].astype(float) >= confidence)]
    no_box = mine["n_boxes"].fillna(0).astype(int) == 0
    outside = ~no_box & mine["pointing"].notna() & ~mine["pointing"].astype("boolean").fillna(True)
    keep = mine[no_box | outside].copy()
    keep["reason"] = [REASON_NO_BOX if nb else REASON_OUTSIDE for nb in no_box[no_box | outside]]
    energy = keep["energy"].astype(float).fillna(0.0)
    keep["suspicion"] = keep["score"].astype(float) * (1.0 - energy)
    columns = ["stem", "class", "score", "n_boxes", "pointing", "energy", "reason", "suspicion"]
    keep = keep.sort_values(["suspicion", "stem"], ascending=[False, True], kind="stable")
    return keep[columns].reset_index(drop=True)


def map_boxes(cam: object, cls: str, threshold: float = 0.5, min_area: int = 16) -> tuple[Box, ...]:
    """Boxes of ``cls`` around the connected regions where the map is at least ``threshold`` of
    its maximum (:func:`cam_core.metrics.cam_to_boxes`), regions under ``min_area`` px dropped.
    """
    found = M.cam_to_boxes(cam, threshold, min_area=min_area)  # type: ignore[arg-type]
    return tuple(Box(cls, b[0], b[1], b[2], b[3]) for b in found)


def voc_bytes(item_maps: Sequence[RowMap], threshold: float = 0.5) -> dict[str, bytes]:
    """``<stem>.xml`` → VOC XML of the map-derived boxes of every listed (sample, class) of that
    image (several classes of one image share its file). The GT boxes are not copied.
    """
    by_stem: dict[str, list[RowMap]] = {}
    for item in item_maps:
        by_stem.setdefault(item.sample.stem, []).append(item)
    out = {}
    for stem, items in by_stem.items():
        boxes = tuple(b for it in items for b in map_boxes(it.cam, it.cls, threshold))
        shape = items[0].cam.shape[:2]
        root = etree.fromstring(voc_xml(items[0].sample.path.name, shape, boxes))
        root.find("folder").text = "cam_core-annotation-qa"  # type: ignore[union-attr]
        root.find("source/database").text = (  # type: ignore[union-attr]
            f"map-derived boxes (map >= {threshold:g} x peak), not ground truth"
        )
        out[f"{stem}.xml"] = etree.tostring(root, pretty_print=True, encoding="utf-8")
    return out


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(files.items()):
            zf.writestr(f"annotations/{name}", data)
    return buf.getvalue()


def write_voc_export(
    item_maps: Sequence[RowMap], target: str | Path, threshold: float = 0.5
) -> Path:
    """Write :func:`voc_bytes` into a NEW folder ``target`` (``<stem>.xml`` each) or, when it
    ends in ``.zip``, a new zip (``annotations/<stem>.xml``). Refuses, with :class:`ExportError`
    naming it, an existing file, an existing non-empty folder, or a zip path that exists: the
    user's files are never overwritten. Returns ``target``.
    """
    path = Path(target)
    files = voc_bytes(item_maps, threshold)
    if path.suffix.lower() == ".zip":
        if path.exists():
            raise ExportError(f"{path} already exists; choose a new file name (nothing written)")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("xb") as f:  # "x": fails rather than overwrite, even in a race
            f.write(_zip(files))
        return path
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        what = "a file" if not path.is_dir() else "a folder that is not empty"
        raise ExportError(f"{path} is {what}; choose a new or empty folder (nothing written)")
    path.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        with (path / name).open("xb") as f:
            f.write(data)
    return path


def voc_zip(item_maps: Sequence[RowMap], threshold: float = 0.5) -> bytes:
    """:func:`voc_bytes` as zip content (``annotations/<stem>.xml``), for a download."""
    return _zip(voc_bytes(item_maps, threshold))
