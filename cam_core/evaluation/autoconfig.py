"""Auto-configuration: pick method, layer, flip averaging and a CAM→box threshold on a
calibration split, and write the choice into the model card.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from cam_core import metrics as M
from cam_core.data import Sample
from cam_core.evaluation.config import BASELINE_LAYER, BASELINES, EvalConfig, box_key
from cam_core.evaluation.loop import Progress, evaluate
from cam_core.evaluation.rows import plain
from cam_core.explain import Explainer
from cam_core.models import ModelCard, card_path_for

__all__ = ["CANDIDATES", "auto_configure", "write_recommended"]

CANDIDATES = "candidates"
"""A ``layers`` entry that stands for every candidate layer of the model."""


def _nan_to_none(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return plain(value)


def auto_configure(
    explainer: Explainer,
    samples: Sequence[Sample],
    methods: Sequence[str],
    layers: Sequence[str | None],
    *,
    thresholds: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7),
    metric: str = "pointing",
    target_rule: str = "file-class",
    tau: float = 0.5,
    tolerance: float = M.CLASSIC_POINTING_TOLERANCE,
    split: str = "val",
    flips: Sequence[bool] = (False,),
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Pick a (method, layer, flip averaging) and a CAM→box threshold on a calibration split.

    ``layers`` may hold :data:`CANDIDATES` (``--layers candidates``): every candidate layer of
    the model (:attr:`ModelCard.candidate_layers`). ``flips`` lists the ``flip_smooth``
    settings to try ((False, True): each method × layer both
    as is and averaged over the four flips, the latter at 4× the work). Rule: every (method,
    layer, flips) is scored by ``(mean metric + mean energy + MaxBoxAccV2) / 3``
    over all scoreable (sample, class) pairs of ``samples`` (``metric`` is one of pointing,
    pointing_tol, iou, box_iou, energy): where the peak lands, how much of the map is on the
    defect, and whether the map's shape outlines it (a map that is one bright cell can score
    high on the first two and still draw no useful box); the best wins, ties going to the first
    in ``flips`` × ``methods`` × ``layers`` order. The threshold is the one in ``thresholds`` whose
    :func:`cam_to_boxes` boxes give the winner the highest mean best-box IoU (ties: the lowest).
    ``split`` is only recorded.
    Returns a JSON-able dict for ``ModelCard.recommended``: method, layer, flips, threshold, score,
    figures (the winner's summary row), baselines (their pointing/energy), candidates,
    calibration (split, n, target_rule, rule).
    """
    # "candidates" stands for every candidate layer of the model (its shape probe's for an
    # architecture we did not register): ModelCard.candidate_layers
    layers = [
        x
        for lay in layers
        for x in (explainer.card.candidate_layers if lay == CANDIDATES else (lay,))
    ]
    allowed = ("pointing", "pointing_tol", "iou", "box_iou", "energy")
    if metric not in allowed:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(allowed)}")
    if not thresholds:
        raise ValueError("thresholds is empty")
    if not flips or len(set(flips)) != len(flips):
        raise ValueError(f"flips must list distinct settings, e.g. (False, True); got {flips!r}")
    cfg = EvalConfig(
        data="<calibration samples>",
        checkpoint=explainer.card.name,
        split=None,
        methods=tuple(methods),
        layers=tuple(layers),
        target_rule=target_rule,
        tau=tau,
        tolerance=tolerance,
        box_thresholds=tuple(float(t) for t in thresholds),
        batch_size=explainer.batch_size,
    )
    tables: dict[bool, pd.DataFrame] = {}
    candidates = []
    for flip in flips:
        run = replace(cfg, flip_smooth=bool(flip))
        result = evaluate(run, explainer=explainer, samples=samples, progress=progress)
        table = result.summary()
        overall = tables[bool(flip)] = table[table["class"] == "all"].set_index(["method", "layer"])
        for m, lay in result.groups():
            if m in BASELINES or (m, lay) not in overall.index:
                continue
            row = overall.loc[(m, lay)]
            score = (row[metric] + row["energy"] + row["maxboxacc_v2"]) / 3
            if row["n"] > 0 and not math.isnan(score):
                candidates.append(
                    {"method": m, "layer": lay, "flips": bool(flip), "score": float(score)}
                )
    if not candidates:
        raise ValueError(
            f"auto_configure: no scoreable (sample, class) pairs among {len(samples)} "
            f"calibration samples (errors: {result.errors[:3]})"
        )
    best = max(candidates, key=lambda c: c["score"])  # max keeps the first of equal scores
    overall = tables[best["flips"]]
    row = overall.loc[(best["method"], best["layer"])]
    by_t = [(float(t), float(row[box_key(t)])) for t in cfg.box_thresholds]
    threshold = max(by_t, key=lambda tv: (tv[1], -tv[0]))[0]
    figures = {k: _nan_to_none(v) for k, v in row.items() if k != "baseline"}
    baselines = {
        b: {k: _nan_to_none(overall.loc[(b, BASELINE_LAYER)][k]) for k in ("pointing", "energy")}
        for b in BASELINES
        if (b, BASELINE_LAYER) in overall.index
    }
    return {
        "method": best["method"],
        "layer": best["layer"],
        "flips": best["flips"],
        "threshold": threshold,
        "score": best["score"],
        "figures": figures,
        "baselines": baselines,
        "candidates": candidates,
        "calibration": {
            "split": split,
            "n": result.n_samples,
            "target_rule": target_rule,
            "rule": f"max (mean {metric} + mean energy + MaxBoxAccV2) / 3; "
            "threshold = argmax mean box IoU",
        },
    }


def write_recommended(
    checkpoint: str | os.PathLike[str], card: ModelCard, recommended: dict[str, Any]
) -> Path:
    """Put ``recommended`` into the card beside ``checkpoint`` (``card`` when there is none
    yet), validated by :class:`ModelCard`; returns the card's path.
    """
    path = card_path_for(checkpoint)
    if path.is_file():
        card = ModelCard.from_json(path.read_text(encoding="utf-8"))
    path.write_text(replace(card, recommended=recommended).to_json() + "\n", encoding="utf-8")
    return path
