"""What one evaluation run is: :class:`EvalConfig`, the target rules, baselines and metric keys."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cam_core import metrics as M
from cam_core.data import SPLITS
from cam_core.methods import get_method
from cam_core.metrics.faithfulness import FILLS as FAITH_FILLS
from cam_core.vocabulary import MAP_METRICS, baseline_id

__all__ = [
    "BASELINES",
    "BASELINE_LAYER",
    "METRICS",
    "PXAP_BINS",
    "TARGET_RULES",
    "EvalConfig",
    "box_key",
]

TARGET_RULES: tuple[str, ...] = ("file-class", "box-classes", "predicted")
"""Which classes of a sample are explained and scored (see :mod:`cam_core.evaluation`)."""

BASELINES: dict[str, Callable[[tuple[int, int]], np.ndarray]] = {
    baseline_id("centre"): M.centre_point_map,
    baseline_id("gaussian"): M.centred_gaussian_map,
    baseline_id("uniform"): M.uniform_map,
}
"""Model-free maps scored beside every method; their layer is :data:`BASELINE_LAYER`."""

BASELINE_LAYER = "-"

METRICS: tuple[str, ...] = MAP_METRICS
"""Per-row figures of :func:`cam_core.metrics.localization_scores`, averaged by the summary
(named in :mod:`cam_core.vocabulary`)."""

PXAP_BINS = 100
"""Histogram bins of the PxAP accumulator (thresholds every 0.01 of the normalised map)."""


def box_key(t: float) -> str:
    """Column name of the best map-box IoU at CAM→box threshold ``t``."""
    return f"box_iou@{t:g}"


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """One evaluation run.

    ``data`` is the dataset folder and ``checkpoint`` the model file (both informational when
    :func:`~cam_core.evaluation.evaluate` is handed samples / an explainer). ``split`` names the
    split the samples come from (read from ``data`` when no samples are handed in, and stated by
    the report); None means every sample. ``layers`` entries may join several layers with "+";
    None is the card's (or architecture's) default layer. ``tau`` is the fraction of the map
    maximum for ``iou``/``box_iou``; ``tolerance`` the pointing-game tolerance in pixels (image
    resolution). ``box_thresholds`` adds a ``box_iou@<t>`` figure per threshold (used by
    :func:`~cam_core.evaluation.auto_configure`). Samples are taken class by class in turn
    (:func:`~cam_core.evaluation.stratified_order`), so ``limit`` — and any stop — keeps a prefix
    that covers every class evenly. ``flip_smooth`` averages every map over the four flips of the
    image (:data:`cam_core.explain.FLIPS`). ``out``: folder of the resumable row store
    (:mod:`cam_core.evaluation.store`). ``sanity``: after the loop, the model-randomization and
    random-logit sanity checks on the first ``sanity_images`` samples
    (:mod:`cam_core.evaluation.sanity`, ``EvalResult.sanity``). ``faithfulness``: every method
    row also gets deletion / insertion AUCs (``faith_steps`` steps, removed pixels filled by
    ``faith_fill``: "blur" or "mean"), their random-order references, ROAD and drop / increase
    in confidence (:mod:`cam_core.metrics.faithfulness`; baseline rows get None).
    """

    data: str
    checkpoint: str
    split: str | None = "test"
    methods: tuple[str, ...] = ("gradcam",)
    layers: tuple[str | None, ...] = (None,)
    target_rule: str = "file-class"
    tau: float = 0.5
    tolerance: float = M.CLASSIC_POINTING_TOLERANCE
    box_thresholds: tuple[float, ...] = ()
    flip_smooth: bool = False
    limit: int | None = None
    batch_size: int = 16
    out: str | None = None
    sanity: bool = False
    sanity_images: int = 8
    faithfulness: bool = False
    faith_steps: int = 20
    faith_fill: str = "blur"

    def __post_init__(self) -> None:
        for name in ("methods", "layers", "box_thresholds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}; valid: None, {', '.join(SPLITS)}")
        if not self.methods:
            raise ValueError("methods is empty; name at least one (e.g. 'gradcam')")
        for m in self.methods:
            if m in BASELINES:
                raise ValueError(f"{m!r} is a baseline: baselines are always evaluated")
            get_method(m)  # KeyError listing the valid names
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods has duplicates: {list(self.methods)}")
        if not self.layers:
            raise ValueError("layers is empty; use (None,) for the default layer")
        if self.target_rule not in TARGET_RULES:
            raise ValueError(
                f"unknown target_rule {self.target_rule!r}; valid: {', '.join(TARGET_RULES)}"
            )
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be a fraction in [0, 1], got {self.tau!r}")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ValueError(
                f"tolerance must be a finite number >= 0 pixels, got {self.tolerance!r}"
            )
        for t in self.box_thresholds:
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"box_thresholds must be fractions in [0, 1], got {t!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {self.limit!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if self.sanity_images < 1:
            raise ValueError(f"sanity_images must be >= 1, got {self.sanity_images!r}")
        if self.faith_steps < 1:
            raise ValueError(f"faith_steps must be >= 1, got {self.faith_steps!r}")
        if self.faith_fill not in FAITH_FILLS:
            raise ValueError(
                f"unknown faith_fill {self.faith_fill!r}; valid: {', '.join(FAITH_FILLS)}"
            )
