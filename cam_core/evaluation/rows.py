"""One batch of samples → rows: maps from the engine, scored against each class's boxes.

A row is one (sample, target class, method, layer) with the figures of
:func:`cam_core.metrics.localization_scores`; the private keys ``_best_ious``, ``_pos`` and
``_neg`` hold what the dataset accumulators (MaxBoxAccV2, PxAP) need, ``_grid`` / ``_gt`` a method
map's 50 x 50 grid and its class's boxes in image fractions (:mod:`cam_core.metrics.position`),
``_n`` the sample's row count (the store's sign that a sample is complete).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cam_core import metrics as M
from cam_core.data import DataError, Sample, read_image, rescale_boxes
from cam_core.evaluation.config import (
    BASELINE_LAYER,
    BASELINES,
    METRICS,
    PXAP_BINS,
    EvalConfig,
    box_key,
)
from cam_core.evaluation.faith import apply_faith, faith_table
from cam_core.evaluation.result import row_columns
from cam_core.explain import CamError, Explainer
from cam_core.metrics.position import encode_grid, normalised_boxes
from cam_core.models import resolve_layer

__all__ = ["MAXBOX", "evaluate_batch", "plain", "public", "resolve_layers"]

MAXBOX = M.MaxBoxAccV2()
"""Used for its thresholds and ``best_ious`` only (stateless there)."""

_ERROR_METHOD = "-"


def plain(value: object) -> object:
    """Numpy scalars → Python scalars (JSON and equality friendly)."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def public(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` without its private keys."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


def resolve_layers(ex: Explainer, layers: Sequence[str | None]) -> tuple[str, ...]:
    """Layer names with None replaced by the default, duplicates dropped; KeyError naming an
    unknown layer path (before any work).
    """
    names = []
    for layer in layers:
        name = layer or ex.default_layer
        for part in name.split("+"):
            resolve_layer(ex.model, part.strip())  # KeyError naming the path
        if name not in names:
            names.append(name)
    return tuple(names)


def _base_row(
    cfg: EvalConfig, sample: Sample, cls: str | None, method: str, layer: str
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(row_columns(cfg))
    row.update(stem=sample.stem, label=sample.label, **{"class": cls}, method=method, layer=layer)
    row.update(n_boxes=0, _best_ious=None, _pos=None, _neg=None)
    return row


def _score_map(
    row: dict[str, Any], cam: np.ndarray, boxes: Sequence[Any], cfg: EvalConfig
) -> dict[str, Any]:
    """Fill ``row`` with the figures of one map against the boxes of its class."""
    row["n_boxes"] = len(boxes)
    try:
        scores = M.localization_scores(cam, boxes, tau=cfg.tau, tolerance=cfg.tolerance)
        row.update({k: plain(v) for k, v in scores.items()})
        if boxes:
            for t in cfg.box_thresholds:
                row[box_key(t)] = M.best_box_iou(M.cam_to_boxes(cam, t), boxes)
            row["_best_ious"] = MAXBOX.best_ious(cam, boxes).tolist()
            pos, neg = M.PxAP(PXAP_BINS).histograms(cam, boxes)
            row["_pos"], row["_neg"] = pos.tolist(), neg.tolist()
    except ValueError as exc:  # a map the metrics refuse (NaN, negative values)
        for k in (*METRICS, *(box_key(t) for t in cfg.box_thresholds)):
            row[k] = None
        row.update(_best_ious=None, _pos=None, _neg=None, error=f"map not scoreable: {exc}")
    return row


def _targets(
    sample: Sample, cfg: EvalConfig, classes: tuple[str, ...], predicted: list[int] | None
) -> list[str | None]:
    """Class names to explain for one sample (None: no class to explain)."""
    if cfg.target_rule == "file-class":
        return [sample.label]
    if cfg.target_rule == "box-classes":
        return list(sample.labels) or [sample.label]
    return [classes[i] for i in predicted or []]


def _target_error(cls: str | None, classes: tuple[str, ...], rule: str) -> str:
    if cls is None:
        return "no file class to explain (use target rule 'box-classes' or 'predicted')"
    return f"class {cls!r} ({rule}) is not one of the model's classes {list(classes)}"


def _correct(probs: np.ndarray, sample: Sample, classes: tuple[str, ...], ex: Explainer) -> object:
    """Prediction == label (single-label) or predicted set == box classes (multi-label)."""
    if ex.card.multilabel:
        if not sample.labels:
            return None
        predicted = {classes[i] for i in ex.default_targets(probs[None])[0]}
        return predicted == set(sample.labels)
    if sample.label not in classes:
        return None
    return int(np.argmax(probs)) == classes.index(sample.label)


def _explain_maps(
    ex: Explainer,
    images: list[np.ndarray],
    methods: Sequence[str],
    targets: list[list[int]],
    layer: str,
    flip_smooth: bool = False,
) -> tuple[dict[tuple[int, int, str], np.ndarray], dict[tuple[int, str], str], np.ndarray | None]:
    """Maps by (image, class index, method), errors by (image, method), and the class
    probabilities (B, K) when the batch went through in one piece (else None).

    One engine call for the batch; when it fails, one call per image and method so that a bad
    map costs only its own rows.
    """
    maps: dict[tuple[int, int, str], np.ndarray] = {}
    errors: dict[tuple[int, str], str] = {}
    try:
        exp = ex.explain(
            images, list(methods), targets=targets, layers=layer, flip_smooth=flip_smooth
        )
        for r in exp.results:
            maps[(r.image, r.class_index, r.method)] = r.cam
        return maps, errors, exp.probs
    except (CamError, ValueError, RuntimeError):
        pass
    for i, image in enumerate(images):
        if not targets[i]:
            continue
        for m in methods:
            try:
                exp = ex.explain(
                    [image], [m], targets=[targets[i]], layers=layer, flip_smooth=flip_smooth
                )
            except (CamError, ValueError, RuntimeError) as exc:
                errors[(i, m)] = f"{m} @ {layer}: {type(exc).__name__}: {exc}"
                continue
            for r in exp.results:
                maps[(i, r.class_index, r.method)] = r.cam
    return maps, errors, None


def evaluate_batch(
    ex: Explainer, batch: Sequence[Sample], cfg: EvalConfig, layers: Sequence[str]
) -> list[dict[str, Any]]:
    """Every row of ``batch``, in sample order; each sample's rows carry ``_n`` (their count).

    An unreadable image, a class the model lacks, or a map that cannot be computed becomes a
    row with ``error`` set; the rest of the batch is scored.
    """
    classes = ex.card.classes
    per_sample: list[list[dict[str, Any]]] = [[] for _ in batch]
    ok: list[int] = []
    images: list[np.ndarray] = []
    for i, s in enumerate(batch):
        try:
            images.append(read_image(s.path))
            ok.append(i)
        except (DataError, OSError) as exc:
            row = _base_row(cfg, s, s.label, _ERROR_METHOD, BASELINE_LAYER)
            row["error"] = f"unreadable image: {exc}"
            per_sample[i].append(row)
    if ok:
        # "predicted" needs the scores first; otherwise they come with the maps
        probs = ex.predict(images) if cfg.target_rule == "predicted" else None
        predicted = ex.default_targets(probs) if probs is not None else None
        names: list[list[str | None]] = []
        target_idx: list[list[int]] = []
        for j, i in enumerate(ok):
            wanted = _targets(batch[i], cfg, classes, predicted[j] if predicted else None)
            names.append(wanted)
            target_idx.append([classes.index(c) for c in wanted if c in classes])
        cams = {}
        for lay in layers:
            maps, errs, layer_probs = _explain_maps(
                ex, images, cfg.methods, target_idx, lay, cfg.flip_smooth
            )
            cams[lay] = (maps, errs)
            probs = layer_probs if probs is None else probs
        if probs is None:
            probs = ex.predict(images)
        faith = (  # every method map of the batch, in one set of perturbation batches
            faith_table(
                ex,
                images,
                [batch[i].stem for i in ok],
                {lay: cams[lay][0] for lay in layers},
                steps=cfg.faith_steps,
                fill=cfg.faith_fill,
            )
            if cfg.faithfulness
            else {}
        )
        for j, i in enumerate(ok):
            s, image = batch[i], images[j]
            shape = image.shape[:2]
            boxes = s.boxes if s.size in (None, shape) else rescale_boxes(s.boxes, s.size, shape)
            score_of = probs[j]
            correct = plain(_correct(score_of, s, classes, ex))
            for cls in names[j]:
                if cls not in classes:
                    row = _base_row(cfg, s, cls, _ERROR_METHOD, BASELINE_LAYER)
                    row["error"] = _target_error(cls, classes, cfg.target_rule)
                    per_sample[i].append(row)
                    continue
                c = classes.index(cls)
                gt = tuple(b for b in boxes if b.cls == cls)
                share = float(M.box_mask(gt, shape).mean()) if gt else 0.0
                found: list[tuple[str, str, np.ndarray | None, str | None]] = []
                for m in cfg.methods:
                    for lay in layers:
                        maps, errs = cams[lay]
                        found.append((m, lay, maps.get((j, c, m)), errs.get((j, m))))
                found += [(b, BASELINE_LAYER, fn(shape), None) for b, fn in BASELINES.items()]
                for m, lay, cam, err in found:
                    row = _base_row(cfg, s, cls, m, lay)
                    row.update(score=float(score_of[c]), correct=correct, n_boxes=len(gt))
                    row["box_share"] = share  # image share covered by the class's boxes
                    row["predicted"] = classes[int(np.argmax(score_of))]  # top-1
                    if cam is not None:
                        _score_map(row, cam, gt, cfg)
                        if lay != BASELINE_LAYER and row["error"] is None:  # bias-map grid
                            row.update(_grid=encode_grid(cam), _gt=normalised_boxes(gt, shape))
                        apply_faith(row, faith.get((j, c, m, lay)))
                    else:
                        row["error"] = err or f"{m} @ {lay}: no map returned"
                    per_sample[i].append(row)
    out = []
    for rows in per_sample:
        for r in rows:
            r["_n"] = len(rows)
        out += rows
    return out
