"""What a run returns: :class:`EvalResult` (rows, summary, coverage, state) and its accumulators."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from cam_core import metrics as M
from cam_core.evaluation.config import (
    BASELINE_LAYER,
    BASELINES,
    METRICS,
    PXAP_BINS,
    EvalConfig,
    box_key,
)
from cam_core.metrics.position import PositionAcc
from cam_core.metrics.stats import image_parts

__all__ = ["NO_CLASS", "Coverage", "EvalResult", "accumulate", "row_columns"]

NO_CLASS = "(no file class)"
"""How :class:`Coverage` names samples whose file class is unknown."""


@dataclass
class _Acc:
    """Dataset accumulators of one (method, layer, class) group."""

    maxbox: M.MaxBoxAccV2 = field(default_factory=M.MaxBoxAccV2)
    pxap: M.PxAP = field(default_factory=lambda: M.PxAP(PXAP_BINS))
    parts: dict[str, tuple[Any, Any, Any]] = field(default_factory=dict)
    """Per image stem (class-level groups only): its MaxBoxAccV2 hits (deltas × thresholds, bool)
    and PxAP positive / negative histograms — what :mod:`cam_core.metrics.stats` resamples."""
    position: PositionAcc = field(default_factory=PositionAcc)
    """Mean map / box density grids in image coordinates (:mod:`cam_core.review.bias`)."""


def accumulate(accs: dict[tuple[str, str, str], _Acc], row: Mapping[str, Any]) -> None:
    """Add one row (with its private ``_best_ious``/``_pos``/``_neg``) to the dataset figures."""
    if row["error"]:
        return
    for cls in (row["class"], "all"):
        acc = accs.setdefault((row["method"], row["layer"], cls), _Acc())
        if "_grid" in row:  # method rows only (baselines carry none)
            acc.position.add(row["_grid"], row.get("_gt"))
        if row["_best_ious"] is None:
            acc.maxbox.skipped += 1
            acc.pxap.skipped += 1
        else:
            acc.maxbox.add_best_ious(row["_best_ious"])
            acc.pxap.add_histograms(row["_pos"], row["_neg"])
            if cls != "all":
                acc.parts[row["stem"]] = image_parts(acc.maxbox.deltas, row)


def row_columns(cfg: EvalConfig) -> list[str]:
    """The public keys of a row, in table order."""
    return [
        "stem",
        "label",
        "class",
        "method",
        "layer",
        *METRICS,
        *(box_key(t) for t in cfg.box_thresholds),
        *((*M.FAITH_COLUMNS, "faith_error") if cfg.faithfulness else ()),
        "score",
        "correct",
        "predicted",
        "n_boxes",
        "box_share",
        "error",
    ]


@dataclass(frozen=True)
class Coverage:
    """Images of each file class a result covers: ``done[k]`` of ``planned[k]`` for
    ``classes[k]`` (classes in the order the run took them; :data:`NO_CLASS` for none).
    """

    classes: tuple[str, ...]
    done: tuple[int, ...]
    planned: tuple[int, ...]

    @classmethod
    def count(cls, planned: Sequence[str | None], done: Sequence[str | None]) -> Coverage:
        """Coverage from the file classes of the planned and of the finished samples."""
        names = list(dict.fromkeys(c or NO_CLASS for c in planned))
        done_names = [c or NO_CLASS for c in done]
        plan_names = [c or NO_CLASS for c in planned]
        return cls(
            classes=tuple(names),
            done=tuple(done_names.count(n) for n in names),
            planned=tuple(plan_names.count(n) for n in names),
        )

    def text(self) -> str:
        """Done images per class, e.g. ``crazing 8, inclusion 8, …`` (none: left out)."""
        parts = [f"{c} {d}" for c, d in zip(self.classes, self.done, strict=True) if d]
        return ", ".join(parts) or "no images"


@dataclass(frozen=True)
class EvalResult:
    """Rows of one run, the settings that produced them, and the dataset accumulators.

    ``rows`` are dicts (keys: :func:`row_columns`) in stem order. ``complete`` is False when
    ``should_stop`` ended the run early (:attr:`state` "stopped"). ``layers`` are resolved layer
    names; ``model`` the model card's name; ``coverage`` the images done per file class.
    ``sanity``: with ``config.sanity``, the sanity checks per (method, layer)
    (:func:`cam_core.sanity.sanity_frame`: method, layer, check, depth, block, spearman,
    abs_spearman, ssim, n, passed, random_logit_passed, threshold); None when off or stopped.
    """

    config: EvalConfig
    classes: tuple[str, ...]
    layers: tuple[str, ...]
    rows: list[dict[str, Any]]
    n_samples: int
    n_done: int
    complete: bool
    model: str
    coverage: Coverage
    accumulators: Mapping[tuple[str, str, str], _Acc] = field(repr=False)
    sanity: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def state(self) -> Literal["done", "stopped"]:
        """``done``: every planned image was evaluated; ``stopped``: a prefix of them."""
        return "done" if self.complete else "stopped"

    def status(self) -> str:
        """One line for a page or a report, e.g. "stopped at 48 of 222 images; covers crazing 8,
        inclusion 8, …" or "done: 222 images; covers crazing 37, …".
        """
        head = (
            f"done: {self.n_done} images"
            if self.complete
            else f"stopped at {self.n_done} of {self.n_samples} images"
        )
        return f"{head}; covers {self.coverage.text()}"

    def settings(self) -> dict[str, str]:
        """The run's settings as display text, in reading order (what produced these rows)."""
        cfg = self.config
        return {
            "model": self.model,
            "checkpoint": cfg.checkpoint,
            "data": cfg.data,
            "split": cfg.split or "all",
            "images": f"{self.n_done} of {self.n_samples}"
            + (f" (limit {cfg.limit})" if cfg.limit else ""),
            "methods": ", ".join(cfg.methods),
            "layers": ", ".join(self.layers),
            "flip averaging": "on" if cfg.flip_smooth else "off",
            "target rule": cfg.target_rule,
            "τ (IoU threshold, fraction of max)": f"{cfg.tau:g}",
            "pointing tolerance (px)": f"{cfg.tolerance:g}",
            "state": self.status(),
        }

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
        return pd.DataFrame(self.rows, columns=row_columns(self.config))

    def summary(self) -> pd.DataFrame:
        """Per (method, layer, class) and per (method, layer) over all classes ("all").

        ``n`` counts scoreable rows (class with boxes, no error) and ``n_rows`` rows without
        error; the :data:`METRICS` (and ``box_iou@<t>``) are means over scoreable rows, the
        "all" row pooling every (sample, class) pair; ``maxboxacc_v2`` and ``pxap`` are the
        dataset figures (fractions). ``baseline`` marks the model-free rows. NaN = nothing to
        score.
        """
        keys = [*METRICS, *(box_key(t) for t in self.config.box_thresholds)]
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


def _dataset_figures(acc: _Acc | None) -> tuple[float, float]:
    """(MaxBoxAccV2, PxAP) of a group; NaN where nothing was scored (or no positive pixel)."""
    if acc is None or acc.maxbox.count == 0:
        return math.nan, math.nan
    try:
        pxap = acc.pxap.compute()["pxap"]
    except ValueError:  # boxes that cover no pixel centre
        pxap = math.nan
    return acc.maxbox.compute()["maxboxacc_v2"], pxap
