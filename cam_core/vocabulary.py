"""The words a person sees: one display name per metric, baseline and method; metric tooltips.

Internal ids stay machine-readable and stable (CSV columns, ``rows.jsonl``, the CLI, session
keys); this module turns them into what tables, charts, captions and slides show. It is the one
place for:

- the metric keys of the evaluation summary and of a panel's figures (:data:`METRICS`), each with
  its display name, a short name for captions, a one-sentence tooltip and its level (``"map"``: one
  value per (image, class) map, averaged by the summary; ``"dataset"``: computed over a whole set);
- the model-free baselines' ids (``baseline:centre`` …) and their names (:data:`BASELINE_NAMES`);
- a method's display name (:attr:`cam_core.methods.MethodSpec.label`) and the " (slow)" marker.

Example::

    >>> metric_name("maxboxacc_v2"), method_name("baseline:centre"), method_name("gradcam")
    ('MaxBoxAccV2', 'Centre point (baseline)', 'Grad-CAM')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cam_core.methods import METHODS

__all__ = [
    "BASELINE_IDS",
    "BASELINE_NAMES",
    "BASELINE_PREFIX",
    "DATASET_METRICS",
    "FAITH_METRICS",
    "MAP_METRICS",
    "METRICS",
    "ROW_HEADINGS",
    "SLOW_MARKER",
    "TARGET_RULE_NAMES",
    "MetricInfo",
    "baseline_id",
    "column_name",
    "is_baseline",
    "method_name",
    "metric_heading",
    "metric_info",
    "metric_name",
    "metric_tooltip",
    "row_heading",
    "target_rule_name",
]

Level = Literal["map", "dataset"]


@dataclass(frozen=True)
class MetricInfo:
    """What a person is told about one metric key.

    ``name`` heads tables and charts, ``short`` fits in a one-line caption, ``tooltip`` is one
    sentence: what it measures, its range, which way is better. ``level``: ``"map"`` (one value per
    (image, class) map; summaries average it) or ``"dataset"`` (computed over a whole set of maps).
    """

    key: str
    name: str
    short: str
    tooltip: str
    level: Level


METRICS: dict[str, MetricInfo] = {
    m.key: m
    for m in (
        MetricInfo(
            "pointing",
            "Pointing game (strict)",
            "pointing",
            "Share of maps whose hottest pixel lies inside a GT box of the class; 0–1, higher is "
            "better.",
            "map",
        ),
        MetricInfo(
            "pointing_tol",
            "Pointing game (15 px tolerance)",
            "pointing ±15 px",
            "Share of maps whose hottest pixel lies within 15 px of a GT box of the class (the "
            "classic pointing game); 0–1, higher is better.",
            "map",
        ),
        MetricInfo(
            "energy",
            "Energy in the boxes",
            "energy",
            "Share of the map's total intensity that falls inside the GT boxes of the class; 0–1, "
            "higher is better.",
            "map",
        ),
        MetricInfo(
            "energy_ratio",
            "Energy / box area",
            "energy ratio",
            "Energy in the boxes divided by the share of the image the boxes cover; 1 = no better "
            "than a uniform map, higher is better.",
            "map",
        ),
        MetricInfo(
            "iou",
            "Pixel IoU at τ",
            "IoU",
            "Overlap (intersection over union) of the map thresholded at τ × its maximum with the "
            "GT boxes; 0–1, higher is better.",
            "map",
        ),
        MetricInfo(
            "box_iou",
            "Best map-box IoU",
            "box IoU",
            "IoU of the best box drawn around a thresholded region of the map with any GT box of "
            "the class; 0–1, higher is better.",
            "map",
        ),
        MetricInfo(
            "maxboxacc_v2",
            "MaxBoxAccV2",
            "MaxBoxAccV2",
            "Over the whole set: share of maps with a box matching a GT box (IoU ≥ δ) at the best "
            "map threshold, averaged over δ = 0.3, 0.5, 0.7; 0–1, higher is better.",
            "dataset",
        ),
        MetricInfo(
            "pxap",
            "PxAP",
            "PxAP",
            "Over the whole set: average precision of the map's values as a detector of pixels "
            "inside the GT boxes; 0–1, higher is better (chance = the boxes' pixel share).",
            "dataset",
        ),
    )
}
"""Every metric key the summary and the panels produce (``box_iou@<t>`` keys are derived from
``box_iou``, see :func:`metric_info`), in display order."""

FAITH_METRICS: dict[str, MetricInfo] = {
    m.key: m
    for m in (
        MetricInfo(
            "deletion_auc",
            "Deletion AUC",
            "deletion AUC",
            "Model probability of the class as the map's most relevant pixels are replaced by a "
            "blurred copy, area under the curve; 0–1, lower is better (compare the random order).",
            "map",
        ),
        MetricInfo(
            "insertion_auc",
            "Insertion AUC",
            "insertion AUC",
            "Model probability of the class as the map's most relevant pixels are put back into a "
            "blurred copy, area under the curve; 0–1, higher is better (compare the random order).",
            "map",
        ),
        MetricInfo(
            "deletion_auc_random",
            "Deletion AUC, random order",
            "deletion AUC (random)",
            "Deletion AUC when the pixels go in a seeded random order: the chance level a map "
            "should beat (be below); 0–1.",
            "map",
        ),
        MetricInfo(
            "insertion_auc_random",
            "Insertion AUC, random order",
            "insertion AUC (random)",
            "Insertion AUC when the pixels come back in a seeded random order: the chance level "
            "a map should beat (be above); 0–1.",
            "map",
        ),
        MetricInfo(
            "road",
            "ROAD (combined)",
            "ROAD",
            "Probability change when the least relevant pixels are imputed minus when the most "
            "relevant are, halved, averaged over 10–90 % removed (Rong et al. 2022); −1–1, "
            "higher is better, 0 = no better than chance.",
            "map",
        ),
        MetricInfo(
            "avg_drop",
            "Drop in confidence",
            "drop",
            "How much the class probability falls when the image is multiplied by the map "
            "(max(0, p − p masked), Chattopadhay et al. 2018); 0–1, lower is better.",
            "map",
        ),
        MetricInfo(
            "increase",
            "Increase in confidence",
            "increase",
            "Share of maps for which the image multiplied by the map raises the class "
            "probability; 0–1, higher is better.",
            "map",
        ),
    )
}
"""Faithfulness figures of an evaluation row (:mod:`cam_core.metrics.faithfulness`), in display
order: per map, but not localization metrics (not in :data:`MAP_METRICS`)."""

MAP_METRICS: tuple[str, ...] = tuple(k for k, m in METRICS.items() if m.level == "map")
"""Keys with one value per (image, class) map."""

DATASET_METRICS: tuple[str, ...] = tuple(k for k, m in METRICS.items() if m.level == "dataset")
"""Keys computed over a whole set of maps (no per-map value)."""

_BOX_AT = "box_iou@"


def metric_info(key: str) -> MetricInfo:
    """The :class:`MetricInfo` of ``key``; ``box_iou@<t>`` is the best map-box IoU at τ = t.

    Unknown keys raise ``KeyError`` listing the valid ones.
    """
    if key in METRICS:
        return METRICS[key]
    if key in FAITH_METRICS:
        return FAITH_METRICS[key]
    if key.startswith(_BOX_AT):
        t = key[len(_BOX_AT) :]
        try:
            float(t)
        except ValueError:
            raise KeyError(f"Unknown metric {key!r}: {t!r} after '@' is not a number") from None
        base = METRICS["box_iou"]
        return MetricInfo(
            key,
            f"{base.name} at τ = {t}",
            f"box IoU @ {t}",
            base.tooltip.replace("a thresholded region", f"the region above {t} × its maximum"),
            "map",
        )
    raise KeyError(f"Unknown metric {key!r}; valid: {[*METRICS, _BOX_AT + '<t>']}")


def metric_name(key: str) -> str:
    """Display name of ``key``: ``"pointing_tol"`` → "Pointing game (15 px tolerance)"."""
    return metric_info(key).name


def metric_heading(column: str) -> str:
    """A table column's heading: the metric's name for a metric key, any other column unchanged
    (for tables mixing "method", "class" and figures: ``frame.rename(columns=metric_heading)``).
    """
    try:
        return metric_info(column).name
    except KeyError:
        return column


def metric_tooltip(key: str) -> str:
    """One-sentence explanation of metric ``key``: what it measures, range, higher is better."""
    return metric_info(key).tooltip


# --------------------------------------------------------------------------- baselines

BASELINE_PREFIX = "baseline:"
"""Ids of model-free maps start with this; they are scored like methods, at layer ``"-"``."""

BASELINE_NAMES: dict[str, str] = {
    "centre": "Centre point",
    "gaussian": "Centred Gaussian",
    "uniform": "Uniform",
}
"""Baseline kind (the part after :data:`BASELINE_PREFIX`) → display name."""


def baseline_id(kind: str) -> str:
    """The id of baseline ``kind``: ``baseline_id("centre") == "baseline:centre"``."""
    if kind not in BASELINE_NAMES:
        raise KeyError(f"Unknown baseline {kind!r}; valid: {list(BASELINE_NAMES)}")
    return BASELINE_PREFIX + kind


BASELINE_IDS: tuple[str, ...] = tuple(baseline_id(k) for k in BASELINE_NAMES)
"""Every baseline id, in display order."""


def is_baseline(method: str) -> bool:
    """True when ``method`` names a model-free baseline (``baseline:…``), not a CAM method."""
    return method.startswith(BASELINE_PREFIX)


# --------------------------------------------------------------------------- methods

SLOW_MARKER = " (slow)"
"""Appended to the names of methods that run many forward passes per image."""


def method_name(method: str, *, mark_slow: bool = False) -> str:
    """Display name of a method or baseline id.

    Registered methods give their :attr:`~cam_core.methods.MethodSpec.label` (``mark_slow`` adds
    :data:`SLOW_MARKER` to slow ones); baselines give "<name> (baseline)"; any other id (a method
    from an older results file) is returned unchanged rather than failing a table.
    """
    if is_baseline(method):
        kind = method[len(BASELINE_PREFIX) :]
        return f"{BASELINE_NAMES.get(kind, kind)} (baseline)"
    spec = METHODS.get(method)
    if spec is None:
        return method
    return spec.label + (SLOW_MARKER if mark_slow and spec.slow else "")


def column_name(column: str) -> str:
    """Display name of a comparison-table column: ``"gradcam @ layer3"`` → "Grad-CAM @ layer3",
    ``"baseline:uniform"`` → "Uniform (baseline)", ``"n"`` → "n (scored)".
    """
    if column == "n":
        return "n (scored)"
    method, sep, layer = column.partition(" @ ")
    return method_name(method) + (f" @ {layer}" if sep else "")


# --------------------------------------------------------------------------- rows and rules

ROW_HEADINGS: dict[str, str] = {
    "stem": "Image",
    "label": "File class",
    "class": "Class",
    "method": "Method",
    "layer": "Layer",
    "score": "Model probability",
    "correct": "Prediction correct",
    "n_boxes": "GT boxes",
    "error": "Error",
}
"""Heading of each non-metric column of an evaluation's rows (``rows.jsonl``, the Rows CSV)."""


def row_heading(column: str) -> str:
    """A rows-table column's heading: ``"box_iou"`` → "Best map-box IoU", ``"score"`` → "Model
    probability"; any unknown column is returned unchanged.
    """
    if column in ROW_HEADINGS:
        return ROW_HEADINGS[column]
    return metric_heading(column)


TARGET_RULE_NAMES: dict[str, str] = {
    "file-class": "The file's class",
    "box-classes": "Every class with boxes",
    "predicted": "The predicted class",
}
"""Evaluation target rule id (:data:`cam_core.evaluation.TARGET_RULES`) → display name."""


def target_rule_name(rule: str) -> str:
    """Display name of target rule ``rule``: ``"file-class"`` → "The file's class"; an unknown
    id is returned unchanged.
    """
    return TARGET_RULE_NAMES.get(rule, rule)
