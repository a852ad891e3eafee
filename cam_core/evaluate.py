"""Dataset loop: localization metrics of methods × layers over a split, beside trivial baselines.

For every (sample, target class, method, layer) one *row* of figures is computed from the map and
the boxes of that class (``Sample.boxes_for``), then the map is dropped: memory holds rows and the
dataset accumulators (MaxBoxAccV2, PxAP) only. Target classes follow ``target_rule``:

- ``"file-class"``: the file's class (NEU-DET's file-name prefix), scored against its boxes;
- ``"box-classes"``: every class with boxes in the image, each against its own boxes;
- ``"predicted"``: the model's predicted class(es) against that class's boxes.

A row whose class has no boxes in the image is kept, with metrics None (not scoreable). The
baselines ``baseline:centre`` (a single peak at the centre pixel), ``baseline:gaussian`` and
``baseline:uniform`` are scored on the same (sample, class) pairs, as methods with layer ``"-"``.

With ``out`` set, rows are appended to ``out/rows.jsonl`` after each batch, together with what the
dataset accumulators need (per row: MaxBoxAccV2's best IoU per map threshold and PxAP's
positive/negative histograms of :data:`PXAP_BINS` bins), so a rerun with the same configuration
skips finished samples and reproduces the uninterrupted figures exactly.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cam_core import metrics as M
from cam_core.data import SPLITS, DataError, Sample, load_dataset, read_image, rescale_boxes
from cam_core.explain import CamError, Explainer
from cam_core.methods import get_method
from cam_core.models import resolve_layer

__all__ = [
    "BASELINES",
    "METRICS",
    "PXAP_BINS",
    "TARGET_RULES",
    "EvalConfig",
    "EvalResult",
    "add_arguments",
    "auto_configure",
    "config_from_args",
    "evaluate",
    "run_cli",
]

TARGET_RULES: tuple[str, ...] = ("file-class", "box-classes", "predicted")
"""Which classes of a sample are explained and scored (see the module docstring)."""

BASELINES: dict[str, Callable[[tuple[int, int]], np.ndarray]] = {
    "baseline:centre": M.centre_point_map,
    "baseline:gaussian": M.centred_gaussian_map,
    "baseline:uniform": M.uniform_map,
}
"""Model-free maps scored beside every method; their layer is :data:`BASELINE_LAYER`."""

BASELINE_LAYER = "-"

METRICS: tuple[str, ...] = ("pointing", "pointing_tol", "energy", "energy_ratio", "iou", "box_iou")
"""Per-row figures of :func:`cam_core.metrics.localization_scores`, averaged by the summary."""

PXAP_BINS = 100
"""Histogram bins of the PxAP accumulator (thresholds every 0.01 of the normalised map)."""

_FORMAT = 1  # bump when rows.jsonl changes meaning
_MAXBOX = M.MaxBoxAccV2()  # used for its thresholds and best_ious only (stateless there)
_ERROR_METHOD = "-"

Progress = Callable[[int, int, str], None]
"""progress(done_samples, total_samples, message), called after each batch."""


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """One evaluation run.

    ``data`` is the dataset folder and ``checkpoint`` the model file (both informational when
    :func:`evaluate` is handed samples / an explainer). ``split`` None means every sample.
    ``layers`` entries may join several layers with "+"; None is the card's (or architecture's)
    default layer. ``tau`` is the fraction of the map maximum for ``iou``/``box_iou``;
    ``tolerance`` the pointing-game tolerance in pixels (image resolution). ``box_thresholds``
    adds a ``box_iou@<t>`` figure per threshold (used by :func:`auto_configure`). ``limit`` keeps
    that many samples, the file classes taken in turn (round-robin, each in stem order) so that
    a small limit covers every class. ``flip_smooth`` averages every map over the four flips of
    the image (:data:`cam_core.explain.FLIPS`). ``out``: folder for resumable rows (module
    docstring).
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


def _box_key(t: float) -> str:
    return f"box_iou@{t:g}"


# --------------------------------------------------------------------------------------------
# the result


@dataclass
class _Acc:
    """Dataset accumulators of one (method, layer, class) group."""

    maxbox: M.MaxBoxAccV2 = field(default_factory=M.MaxBoxAccV2)
    pxap: M.PxAP = field(default_factory=lambda: M.PxAP(PXAP_BINS))


@dataclass(frozen=True)
class EvalResult:
    """Rows of one run and the dataset accumulators behind :meth:`summary`.

    ``rows`` are dicts (keys: stem, label, class, method, layer, the :data:`METRICS`, any
    ``box_iou@<t>``, score, correct, n_boxes, error) in sample order. ``complete`` is False when
    ``should_stop`` ended the run early. ``layers`` are resolved layer names.
    """

    config: EvalConfig
    classes: tuple[str, ...]
    layers: tuple[str, ...]
    rows: list[dict[str, Any]]
    n_samples: int
    n_done: int
    complete: bool
    accumulators: Mapping[tuple[str, str, str], _Acc] = field(repr=False)

    @property
    def errors(self) -> list[tuple[str, str]]:
        """(stem, message) of every failed sample or map, once each, in row order."""
        seen: dict[tuple[str, str], None] = {}
        for r in self.rows:
            if r["error"]:
                seen[(r["stem"], r["error"])] = None
        return list(seen)

    def groups(self) -> list[tuple[str, str]]:
        """(method, layer) pairs in table order: methods × layers, then the baselines."""
        pairs = [(m, lay) for m in self.config.methods for lay in self.layers]
        return pairs + [(b, BASELINE_LAYER) for b in BASELINES]

    def rows_frame(self) -> pd.DataFrame:
        """:attr:`rows` as a DataFrame (one row per sample × class × method × layer)."""
        return pd.DataFrame(self.rows, columns=_row_columns(self.config))

    def summary(self) -> pd.DataFrame:
        """Per (method, layer, class) and per (method, layer) over all classes ("all").

        ``n`` counts scoreable rows (class with boxes, no error) and ``n_rows`` rows without
        error; the :data:`METRICS` (and ``box_iou@<t>``) are means over scoreable rows, the
        "all" row pooling every (sample, class) pair; ``maxboxacc_v2`` and ``pxap`` are the
        dataset figures (fractions). ``baseline`` marks the model-free rows. NaN = nothing to
        score.
        """
        keys = [*METRICS, *(_box_key(t) for t in self.config.box_thresholds)]
        by_group: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for r in self.rows:
            if r["error"]:
                continue
            for cls in (r["class"], "all"):
                by_group.setdefault((r["method"], r["layer"], cls), []).append(r)
        present = {c for (_, _, c) in by_group}
        classes = [c for c in self.classes if c in present]
        classes += [*sorted(present - set(classes) - {"all"}), "all"]
        out = []
        for method, layer in self.groups():
            for cls in classes:
                rows = by_group.get((method, layer, cls))
                if rows is None:
                    continue
                rec: dict[str, Any] = {
                    "method": method,
                    "layer": layer,
                    "class": cls,
                    "baseline": method in BASELINES,
                    "n": sum(r["pointing"] is not None for r in rows),
                    "n_rows": len(rows),
                }
                for k in keys:
                    vals = [float(r[k]) for r in rows if r.get(k) is not None]
                    rec[k] = math.fsum(vals) / len(vals) if vals else math.nan
                acc = self.accumulators.get((method, layer, cls))
                rec["maxboxacc_v2"], rec["pxap"] = _dataset_figures(acc)
                out.append(rec)
        columns = ["method", "layer", "class", "baseline", "n", "n_rows", *keys]
        return pd.DataFrame(out, columns=[*columns, "maxboxacc_v2", "pxap"])

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`summary` as CSV; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.summary().to_csv(path, index=False, float_format="%.6g")
        return path

    def to_html(
        self,
        path: str | os.PathLike[str],
        examples: Sequence[tuple[str, bytes]] = (),
        *,
        title: str = "CAM localization report",
    ) -> Path:
        """Write a self-contained HTML report (no network needed); returns the path.

        Holds the run's configuration, the summary table (baseline rows marked), a bar chart of
        pointing per class and method, a box plot of the energy in boxes, the errors, and
        ``examples``: (caption, PNG bytes) panels embedded as base64 images.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(build_report(self, examples, title=title), encoding="utf-8")
        return path


def _dataset_figures(acc: _Acc | None) -> tuple[float, float]:
    """(MaxBoxAccV2, PxAP) of a group; NaN where nothing was scored (or no positive pixel)."""
    if acc is None or acc.maxbox.count == 0:
        return math.nan, math.nan
    try:
        pxap = acc.pxap.compute()["pxap"]
    except ValueError:  # boxes that cover no pixel centre
        pxap = math.nan
    return acc.maxbox.compute()["maxboxacc_v2"], pxap


def _row_columns(cfg: EvalConfig) -> list[str]:
    return [
        "stem",
        "label",
        "class",
        "method",
        "layer",
        *METRICS,
        *(_box_key(t) for t in cfg.box_thresholds),
        "score",
        "correct",
        "n_boxes",
        "error",
    ]


# --------------------------------------------------------------------------------------------
# rows


def _plain(value: object) -> object:
    """Numpy scalars → Python scalars (JSON and equality friendly)."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _base_row(
    cfg: EvalConfig, sample: Sample, cls: str | None, method: str, layer: str
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(_row_columns(cfg))
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
        row.update({k: _plain(v) for k, v in scores.items()})
        if boxes:
            for t in cfg.box_thresholds:
                row[_box_key(t)] = M.best_box_iou(M.cam_to_boxes(cam, t), boxes)
            row["_best_ious"] = _MAXBOX.best_ious(cam, boxes).tolist()
            pos, neg = M.PxAP(PXAP_BINS).histograms(cam, boxes)
            row["_pos"], row["_neg"] = pos.tolist(), neg.tolist()
    except ValueError as exc:  # a map the metrics refuse (NaN, negative values)
        for k in (*METRICS, *(_box_key(t) for t in cfg.box_thresholds)):
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


def _evaluate_batch(
    ex: Explainer, batch: Sequence[Sample], cfg: EvalConfig, layers: Sequence[str]
) -> list[dict[str, Any]]:
    """Every row of ``batch``, in sample order; each sample's rows carry ``_n`` (their count)."""
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
        for j, i in enumerate(ok):
            s, image = batch[i], images[j]
            shape = image.shape[:2]
            boxes = s.boxes if s.size in (None, shape) else rescale_boxes(s.boxes, s.size, shape)
            score_of = probs[j]
            correct = _plain(_correct(score_of, s, classes, ex))
            for cls in names[j]:
                if cls not in classes:
                    row = _base_row(cfg, s, cls, _ERROR_METHOD, BASELINE_LAYER)
                    row["error"] = _target_error(cls, classes, cfg.target_rule)
                    per_sample[i].append(row)
                    continue
                c = classes.index(cls)
                gt = tuple(b for b in boxes if b.cls == cls)
                found: list[tuple[str, str, np.ndarray | None, str | None]] = []
                for m in cfg.methods:
                    for lay in layers:
                        maps, errs = cams[lay]
                        found.append((m, lay, maps.get((j, c, m)), errs.get((j, m))))
                found += [(b, BASELINE_LAYER, fn(shape), None) for b, fn in BASELINES.items()]
                for m, lay, cam, err in found:
                    row = _base_row(cfg, s, cls, m, lay)
                    row.update(score=float(score_of[c]), correct=correct, n_boxes=len(gt))
                    if cam is not None:
                        _score_map(row, cam, gt, cfg)
                    else:
                        row["error"] = err or f"{m} @ {lay}: no map returned"
                    per_sample[i].append(row)
    out = []
    for rows in per_sample:
        for r in rows:
            r["_n"] = len(rows)
        out += rows
    return out


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _accumulate(accs: dict[tuple[str, str, str], _Acc], row: Mapping[str, Any]) -> None:
    if row["error"]:
        return
    for cls in (row["class"], "all"):
        acc = accs.setdefault((row["method"], row["layer"], cls), _Acc())
        if row["_best_ious"] is None:
            acc.maxbox.skipped += 1
            acc.pxap.skipped += 1
        else:
            acc.maxbox.add_best_ious(row["_best_ious"])
            acc.pxap.add_histograms(row["_pos"], row["_neg"])


# --------------------------------------------------------------------------------------------
# resumable storage


def _file_digest(path: str) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run_identity(cfg: EvalConfig, ex: Explainer, layers: Sequence[str]) -> dict[str, Any]:
    """Everything that changes a row's figures: not ``out`` or ``limit``, nor ``batch_size``
    (which moves maps by float rounding only, ~1e-6).
    """
    data = Path(cfg.data)
    card = ex.card
    return {
        "format": _FORMAT,
        "data": str(data.resolve()) if data.exists() else cfg.data,
        "split": cfg.split,
        "checkpoint_sha256": _file_digest(cfg.checkpoint) or cfg.checkpoint,
        "model": {
            "arch": card.arch,
            "classes": list(card.classes),
            "multilabel": card.multilabel,
            "input_size": card.input_size,
            "mean": list(card.mean),
            "std": list(card.std),
        },
        "methods": list(cfg.methods),
        "layers": list(layers),
        "target_rule": cfg.target_rule,
        "tau": cfg.tau,
        "tolerance": cfg.tolerance,
        "box_thresholds": list(cfg.box_thresholds),
        "flip_smooth": cfg.flip_smooth,
        "pxap_bins": PXAP_BINS,
        "maxbox_thresholds": _MAXBOX.thresholds.tolist(),
        "maxbox_deltas": list(_MAXBOX.deltas),
    }


class _RowStore:
    """``out/config.json`` + ``out/rows.jsonl``: finished samples' rows, appended per batch."""

    def __init__(self, out: Path, identity: dict[str, Any]) -> None:
        self.out = out
        self.rows_file = out / "rows.jsonl"
        config_file = out / "config.json"
        text = json.dumps(identity, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        out.mkdir(parents=True, exist_ok=True)
        if config_file.exists():
            try:
                saved = json.loads(config_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"{config_file}: unreadable ({exc}); delete {out}") from None
            if saved.get("hash") != digest:
                old = saved.get("config", {}) if isinstance(saved, dict) else {}
                diff = sorted(k for k in identity if old.get(k) != identity[k]) or ["format"]
                raise ValueError(
                    f"{out} holds an evaluation with another configuration ({', '.join(diff)} "
                    "differ); choose another output folder or delete it"
                )
        elif self.rows_file.exists():
            raise ValueError(
                f"{self.rows_file} exists without config.json; cannot tell what it holds — "
                "choose another output folder or delete it"
            )
        else:
            payload = {"hash": digest, "config": identity}
            config_file.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        self.done = self._load()

    def _load(self) -> dict[str, list[dict[str, Any]]]:
        """Rows of every complete, error-free sample; the file is rewritten without the rest."""
        if not self.rows_file.exists():
            return {}
        by_stem: dict[str, list[dict[str, Any]]] = {}
        dropped = False
        with self.rows_file.open(encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    by_stem.setdefault(row["stem"], []).append(row)
                except (ValueError, KeyError, TypeError):
                    dropped = True  # a line cut short by an interrupted write
        done = {}
        for stem, rows in by_stem.items():
            if len(rows) == rows[0].get("_n") and not any(r["error"] for r in rows):
                done[stem] = rows
            else:
                dropped = True  # partial or failed sample: computed again
        if dropped:
            tmp = self.rows_file.with_suffix(".jsonl.tmp")
            with tmp.open("w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for rows in done.values() for r in rows)
            os.replace(tmp, self.rows_file)
        return done

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        with self.rows_file.open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
            f.flush()
            os.fsync(f.fileno())


# --------------------------------------------------------------------------------------------
# the loop


def _stem(sample: Sample) -> str:
    return sample.stem


def _limited(samples: list[Sample], limit: int | None) -> list[Sample]:
    """At most ``limit`` samples taken class by class in turn (round-robin over file classes,
    each in stem order), so a small limit still covers every class; returned in stem order.
    """
    if limit is None or limit >= len(samples):
        return samples
    by_label: dict[str | None, list[Sample]] = {}
    for s in samples:
        by_label.setdefault(s.label, []).append(s)
    queues = [by_label[k] for k in sorted(by_label, key=lambda k: (k is None, k or ""))]
    picked: list[Sample] = []
    depth = 0
    while len(picked) < limit:
        picked += [q[depth] for q in queues if depth < len(q)][: limit - len(picked)]
        depth += 1
    return sorted(picked, key=lambda s: s.stem)


def _resolve_layers(ex: Explainer, layers: Sequence[str | None]) -> tuple[str, ...]:
    names = []
    for layer in layers:
        name = layer or ex.default_layer
        for part in name.split("+"):
            resolve_layer(ex.model, part.strip())  # KeyError naming the path
        if name not in names:
            names.append(name)
    return tuple(names)


def evaluate(
    cfg_or_args: EvalConfig | argparse.Namespace,
    *,
    explainer: Explainer | None = None,
    samples: Sequence[Sample] | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EvalResult:
    """Score every (sample, target class, method, layer) and the baselines over a dataset.

    ``cfg_or_args`` is an :class:`EvalConfig` or the CLI's parsed arguments. Without
    ``explainer`` the checkpoint is loaded (CPU); without ``samples`` ``cfg.data``/``cfg.split``
    are read. Samples are processed in stem order, ``batch_size`` at a time; ``should_stop()`` is
    asked before each batch (True: a partial result, ``complete`` False) and ``progress`` is
    called after each. A sample that cannot be read, or a map that cannot be computed, becomes a
    row with ``error`` set. Raises ValueError when ``cfg.out`` holds another configuration.
    """
    if isinstance(cfg_or_args, argparse.Namespace):
        cfg = config_from_args(cfg_or_args)
        arch, classes = cfg_or_args.arch, _split_list(cfg_or_args.classes) or None
    else:
        cfg, arch, classes = cfg_or_args, None, None
    if explainer is None:
        from cam_core.models import load_model

        loaded = load_model(cfg.checkpoint, arch=arch, classes=classes)
        explainer = Explainer(loaded.model, loaded.card, batch_size=cfg.batch_size)
    if samples is None:
        samples = load_dataset(cfg.data, split=cfg.split).samples
    todo = _limited(sorted(samples, key=_stem), cfg.limit)
    layers = _resolve_layers(explainer, cfg.layers)
    store = _RowStore(Path(cfg.out), _run_identity(cfg, explainer, layers)) if cfg.out else None
    done_rows = store.done if store else {}
    by_stem: dict[str, list[dict[str, Any]]] = {}
    accs: dict[tuple[str, str, str], _Acc] = {}
    wanted = {s.stem for s in todo}
    for stem, rows in done_rows.items():
        if stem in wanted:
            for r in rows:
                _accumulate(accs, r)
            by_stem[stem] = [_public(r) for r in rows]
    pending = [s for s in todo if s.stem not in by_stem]
    n_done = len(todo) - len(pending)
    if progress is not None and n_done:
        progress(n_done, len(todo), f"resumed {n_done} finished samples from {cfg.out}")
    complete = True
    for start in range(0, len(pending), cfg.batch_size):
        if should_stop is not None and should_stop():
            complete = False
            break
        batch = pending[start : start + cfg.batch_size]
        rows = _evaluate_batch(explainer, batch, cfg, layers)
        if store is not None:
            store.append(rows)
        for r in rows:
            _accumulate(accs, r)
            by_stem.setdefault(r["stem"], []).append(_public(r))
        n_done += len(batch)
        if progress is not None:
            progress(n_done, len(todo), f"{n_done}/{len(todo)} images")
    ordered = [r for s in todo for r in by_stem.get(s.stem, [])]
    return EvalResult(
        config=cfg,
        classes=explainer.card.classes,
        layers=layers,
        rows=ordered,
        n_samples=len(todo),
        n_done=n_done,
        complete=complete,
        accumulators=accs,
    )


# --------------------------------------------------------------------------------------------
# auto-configuration


def _nan_to_none(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return _plain(value)


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

    ``flips`` lists the ``flip_smooth`` settings to try ((False, True): each method × layer both
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
    by_t = [(float(t), float(row[_box_key(t)])) for t in cfg.box_thresholds]
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


# --------------------------------------------------------------------------------------------
# the HTML report


def _fmt(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3f}"
    return str(value)


def _table_html(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for rec in df.to_dict("records"):
        cls = ' class="baseline"' if rec.get("baseline") else ""
        cls = ' class="all"' if not cls and rec.get("class") == "all" else cls
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in rec.values())
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figures(result: EvalResult, table: pd.DataFrame) -> list[Any]:
    import plotly.graph_objects as go

    bars = go.Figure()
    energy = go.Figure()
    rows = result.rows_frame()
    for method, layer in result.groups():
        name = method if method in BASELINES else f"{method} @ {layer}"
        is_base = method in BASELINES
        part = table[(table["method"] == method) & (table["layer"] == layer)]
        bars.add_bar(
            x=part["class"],
            y=part["pointing"],
            name=name,
            marker_pattern_shape="/" if is_base else "",
            opacity=0.55 if is_base else 1.0,
        )
        vals = rows[(rows["method"] == method) & (rows["layer"] == layer)]["energy"].dropna()
        energy.add_box(y=vals.astype(float), name=name, marker_color="gray" if is_base else None)
    bars.update_layout(
        title="Pointing game (strict) per class — hatched: baselines",
        barmode="group",
        yaxis={"range": [0, 1], "title": "hit rate"},
        height=420,
    )
    energy.update_layout(
        title="Energy inside the boxes per (sample, class)",
        yaxis={"range": [0, 1], "title": "share of map mass"},
        showlegend=False,
        height=420,
    )
    return [bars, energy]


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.2rem .45rem;text-align:right}
th{background:#f0f0f0}td:nth-child(-n+3){text-align:left}
tr.baseline td{background:#f6f6f6;color:#666;font-style:italic}
tr.all td{font-weight:600}
.examples{display:flex;flex-wrap:wrap;gap:1rem}.examples figure{margin:0}
.examples img{max-width:320px;border:1px solid #ccc}
.warn{background:#fff3cd;padding:.5rem;border:1px solid #e0c060}
"""


def build_report(
    result: EvalResult,
    examples: Sequence[tuple[str, bytes]] = (),
    *,
    title: str = "CAM localization report",
) -> str:
    """The self-contained HTML text of :meth:`EvalResult.to_html` (plotly.js inlined once)."""
    import plotly.io as pio

    cfg = result.config
    table = result.summary()
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    if not result.complete:
        parts.append(
            f"<p class='warn'>Partial run: {result.n_done} of {result.n_samples} samples.</p>"
        )
    settings = {
        "data": cfg.data,
        "split": cfg.split or "all",
        "checkpoint": cfg.checkpoint,
        "samples": f"{result.n_done} of {result.n_samples}",
        "target rule": cfg.target_rule,
        "tau (IoU threshold, fraction of max)": cfg.tau,
        "pointing tolerance (px)": cfg.tolerance,
    }
    parts.append("<h2>Run</h2><table>")
    parts += [
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in settings.items()
    ]
    parts.append("</table>")
    parts.append(
        "<h2>Summary</h2><p>Rows marked <i>baseline</i> (grey, italic) are model-free maps "
        "scored on the same (sample, class) pairs: a single peak at the image centre, a centred "
        "Gaussian and a uniform map. A method is only informative where it beats them. Metrics "
        "are means over scoreable pairs (the class has boxes in the image); <b>all</b> pools "
        "every pair; maxboxacc_v2 and pxap are dataset figures.</p>"
    )
    parts.append(_table_html(table))
    if not table.empty:
        parts.append("<h2>Figures</h2>")
        for k, fig in enumerate(_figures(result, table)):
            parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=k == 0))
    if result.errors:
        parts.append(f"<h2>Errors ({len(result.errors)})</h2><ul>")
        parts += [
            f"<li><b>{html.escape(stem)}</b>: {html.escape(msg)}</li>"
            for stem, msg in result.errors
        ]
        parts.append("</ul>")
    if examples:
        parts.append("<h2>Examples</h2><div class='examples'>")
        for k, (caption, png) in enumerate(examples):
            if not isinstance(png, bytes) or not png.startswith(b"\x89PNG\r\n\x1a\n"):
                raise ValueError(f"example {k} ({caption!r}) is not PNG bytes")
            data = base64.b64encode(png).decode("ascii")
            parts.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# command line


def _split_list(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``python -m cam_core evaluate`` flags."""
    p.add_argument("--data", default=None, help="dataset folder (default: the NEU-DET copy found)")
    p.add_argument("--split", default="test", choices=[*SPLITS, "all"])
    p.add_argument("--checkpoint", required=True, help="model file (card JSON beside it)")
    p.add_argument("--arch", default=None, help="architecture, when there is no model card")
    p.add_argument("--classes", default=None, help="comma-separated, when there is no model card")
    p.add_argument("--methods", default="gradcam", help="comma-separated method names")
    p.add_argument(
        "--layers", default=None, help="comma-separated layers, each may join several with '+'"
    )
    p.add_argument("--target-rule", default="file-class", choices=TARGET_RULES)
    p.add_argument("--tau", type=float, default=0.5, help="IoU threshold, fraction of map max")
    p.add_argument("--tolerance", type=float, default=M.CLASSIC_POINTING_TOLERANCE)
    p.add_argument("--limit", type=int, default=None, help="N samples, classes in turn")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--out", default=None, help="folder: rows.jsonl (resumable), summary.csv, report.html"
    )
    p.add_argument(
        "--auto-configure",
        action="store_true",
        help="pick method/layer/threshold on the val split; write it into the model card",
    )
    p.add_argument("--thresholds", default="0.3,0.4,0.5,0.6,0.7", help="for --auto-configure")
    p.add_argument(
        "--flip-smooth",
        action="store_true",
        help="average every map over the four flips of the image (4x the work)",
    )
    p.add_argument(
        "--try-flips",
        action="store_true",
        help="--auto-configure tries every method x layer with and without flip averaging",
    )
    p.add_argument(
        "--calibration-split",
        default="val",
        choices=[*SPLITS, "all"],
        help="split of the calibration folder that --auto-configure chooses on (all: a folder "
        "made only for it, such as held-out val mosaics)",
    )
    p.add_argument(
        "--calibration-data",
        default=None,
        help="folder --auto-configure chooses on (default --data)",
    )


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The :class:`EvalConfig` of parsed ``evaluate`` arguments."""
    from cam_core.data import find_neu_det

    data = args.data or find_neu_det()
    if data is None:
        raise ValueError("no --data given and no NEU-DET folder found (set NEU_DET_DIR)")
    return EvalConfig(
        data=str(data),
        checkpoint=args.checkpoint,
        split=None if args.split == "all" else args.split,
        methods=tuple(_split_list(args.methods)),
        layers=tuple(_split_list(args.layers)) or (None,),
        target_rule=args.target_rule,
        tau=args.tau,
        tolerance=args.tolerance,
        flip_smooth=args.flip_smooth,
        limit=args.limit,
        batch_size=args.batch_size,
        out=args.out,
    )


def _write_recommended(checkpoint: str, card: Any, recommended: dict[str, Any]) -> Path:
    """Put ``recommended`` into the card JSON beside ``checkpoint`` (created when missing)."""
    from cam_core.models import card_path_for

    path = card_path_for(checkpoint)
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else asdict(card)
    data["recommended"] = recommended
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def run_cli(args: argparse.Namespace) -> int:
    """Run ``python -m cam_core evaluate``; returns the exit status (0 ok, 1 nothing scored,
    2 bad input, 130 interrupted).
    """
    from tqdm import tqdm

    from cam_core.models import CheckpointError, load_model

    try:
        cfg = config_from_args(args)
        loaded = load_model(
            cfg.checkpoint, arch=args.arch, classes=_split_list(args.classes) or None
        )
        explainer = Explainer(loaded.model, loaded.card, batch_size=cfg.batch_size)
        thresholds = tuple(float(t) for t in _split_list(args.thresholds))
    except (ValueError, KeyError, CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    bar = tqdm(unit="img", dynamic_ncols=True, file=sys.stderr)

    def progress(done: int, total: int, message: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(message, refresh=True)

    try:
        if args.auto_configure:
            cal_split = None if args.calibration_split == "all" else args.calibration_split
            cal_data = args.calibration_data or cfg.data
            val = _limited(
                sorted(load_dataset(cal_data, split=cal_split).samples, key=_stem), cfg.limit
            )
            bar.set_description(f"calibrating ({args.calibration_split})")
            rec = auto_configure(
                explainer,
                val,
                cfg.methods,
                cfg.layers,
                thresholds=thresholds,
                target_rule=cfg.target_rule,
                split=cal_split or f"all of {Path(cal_data).name}",
                tau=cfg.tau,
                tolerance=cfg.tolerance,
                flips=(False, True) if args.try_flips else (cfg.flip_smooth,),
                progress=progress,
            )
            card_file = _write_recommended(cfg.checkpoint, loaded.card, rec)
            bar.write(
                f"auto-configure on {args.calibration_split} (n={rec['calibration']['n']}): "
                f"{rec['method']} @ {rec['layer']}"
                f"{' with flip averaging' if rec['flips'] else ''}, "
                f"threshold {rec['threshold']:g} → written to {card_file}"
            )
            if cfg.split == cal_split and cal_data == cfg.data:
                bar.write(
                    "warning: evaluating on the calibration split (val): figures are optimistic"
                )
        dataset = load_dataset(cfg.data, split=cfg.split)
        for err in dataset.errors:
            bar.write(f"skipped: {err}")
        bar.set_description(f"evaluating ({cfg.split or 'all'})")
        bar.reset()
        result = evaluate(cfg, explainer=explainer, samples=dataset.samples, progress=progress)
    except KeyboardInterrupt:
        bar.close()
        hint = " — rerun the same command to resume" if cfg.out else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return 130
    except (ValueError, KeyError, CheckpointError, DataError) as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar.close()
    table = result.summary()
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for stem, msg in result.errors:
        print(f"error: {stem}: {msg}", file=sys.stderr)
    if cfg.out:
        out = Path(cfg.out)
        print(f"wrote {result.to_csv(out / 'summary.csv')}, {result.to_html(out / 'report.html')}")
    scored = any(r["pointing"] is not None for r in result.rows if r["method"] not in BASELINES)
    return 0 if scored else 1
