"""Localization metrics for class-activation maps, in pure numpy + OpenCV (no torch).

Conventions shared by every function here:

- A *map* (``cam``) is a finite 2-D array of shape (H, W) at image resolution, normally
  float32 in [0, 1]. NaN or inf raises ``ValueError``.
- *Boxes* are :class:`cam_core.data.Box` already at the map's resolution, in pixels, 0-based and
  half-open. A pixel (row r, column c) is inside a box iff its centre ``(c + 0.5, r + 0.5)`` is.
  Metrics never filter by class: pass the boxes of the class the map explains
  (``Sample.boxes_for(cls)``).
- Per-(image, class) scores return ``None`` when there are no boxes (not scoreable).
- Predicted boxes are tuples ``(x0, y0, x1, y1[, score])`` in the same half-open pixel convention.

Modules: :mod:`.localization` (per-map figures), :mod:`.curves` (dataset-level MaxBoxAccV2, PxAP),
:mod:`.baselines` (model-free maps), :mod:`.faithfulness` (deletion / insertion, ROAD, drop /
increase in confidence: the one module that runs the model, through a scorer callable).
"""

from cam_core.metrics.baselines import centre_point_map, centred_gaussian_map, uniform_map
from cam_core.metrics.curves import MaxBoxAccV2, PxAP
from cam_core.metrics.faithfulness import (
    FAITH_COLUMNS,
    Curves,
    Faithfulness,
    FaithfulnessError,
    confidence_change,
    deletion_insertion,
    road,
    score_faithfulness,
)
from cam_core.metrics.localization import (
    CLASSIC_POINTING_TOLERANCE,
    MapFigures,
    PredBox,
    best_box_iou,
    box_iou,
    box_mask,
    cam_to_boxes,
    energy_in_boxes,
    energy_ratio,
    localization_scores,
    map_figures,
    mask_iou,
    pixel_iou,
    pointed_pixel,
    pointing_game,
)

__all__ = [
    "CLASSIC_POINTING_TOLERANCE",
    "FAITH_COLUMNS",
    "Curves",
    "Faithfulness",
    "FaithfulnessError",
    "MapFigures",
    "MaxBoxAccV2",
    "PredBox",
    "PxAP",
    "best_box_iou",
    "box_iou",
    "box_mask",
    "cam_to_boxes",
    "centre_point_map",
    "centred_gaussian_map",
    "confidence_change",
    "deletion_insertion",
    "energy_in_boxes",
    "energy_ratio",
    "localization_scores",
    "map_figures",
    "mask_iou",
    "pixel_iou",
    "pointed_pixel",
    "pointing_game",
    "road",
    "score_faithfulness",
    "uniform_map",
]
