"""Can a map be trusted? Confidence intervals for an evaluation and a per-class verdict.

The verdict is given per (model, method, layer, class) — and for "all" classes pooled — from
three components, each *pass*, *fail*, *unclear* or *not measured*:

1. **Localization** (is the evidence the defect?): the paired difference of
   :data:`LOCALIZATION_FIGURE` (energy in the boxes) between the method and the *best* baseline
   of that class (centre point, centred Gaussian, uniform map; the one with the highest mean),
   on the same images, with its 95 % bootstrap interval (images resampled, seed 0,
   :mod:`cam_core.metrics.stats`). Pass: the interval lies above 0; fail: below 0; unclear:
   it contains 0 — or the class has fewer than :data:`MIN_IMAGES` images.
2. **Faithfulness** (does the model's score depend on what the map shows?): per (image, class)
   ``gain = (insertion AUC − deletion AUC) − (the same for a random-order map)``
   (:data:`FAITHFULNESS_FIGURE`); pass: the interval of its mean lies above 0 (the map orders
   pixels better than chance), fail: below 0, unclear: contains 0.
3. **Sanity** (Adebayo et al.): the method's cascading model-randomization check at that layer
   (:mod:`cam_core.sanity`; per method and layer, the same for every class): its ``passed``
   flag, unclear when fewer than :data:`MIN_IMAGES` images were checked or its interval
   straddles the threshold.

**Rule** (:data:`RULE`): *green* when all three pass; *red* when any fails (a map worse than a
model-free map on the boxes, worse than a random order, or one that survives the destruction of
the model's weights); otherwise *amber* (something is unclear or was not measured). A component
that was not run is "not measured", so a run without ``--faithfulness`` / ``--sanity`` gives at
most amber.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cam_core.evaluation.config import BASELINES, METRICS, box_key
from cam_core.metrics import stats as S
from cam_core.metrics.faithfulness import FAITH_COLUMNS

if TYPE_CHECKING:
    from cam_core.evaluation.result import EvalResult

__all__ = [
    "FAITHFULNESS_COLUMNS",
    "FAITHFULNESS_FIGURE",
    "LOCALIZATION_FIGURE",
    "MIN_IMAGES",
    "RULE",
    "VERDICT_COLUMNS",
    "confidence_table",
    "faithfulness_gain",
    "summary_with_ci",
    "verdict_table",
    "verdicts",
]

LOCALIZATION_FIGURE = "energy"
"""The localization figure the verdict reads: the share of the map's mass inside the boxes
(continuous, so its interval is tighter than the pointing game's on a few dozen images)."""

FAITHFULNESS_FIGURE = "faithfulness_gain"
"""Per-row ``(insertion − deletion) − (insertion_random − deletion_random)`` AUC."""

FAITHFULNESS_COLUMNS: tuple[str, ...] = FAITH_COLUMNS
"""Row columns of a run with faithfulness (``EvalConfig(faithfulness=True)``)."""

RULE = (
    "Green: all three pass — localization: energy in the boxes above the best model-free "
    "baseline of the class (paired 95 % bootstrap interval of the difference above 0); "
    "faithfulness: (insertion − deletion AUC) above the same for a random-order map (interval "
    "above 0); sanity: the map changes when the model's weights are randomised (mean |Spearman "
    "ρ| < 0.5 at full randomization, its interval below 0.5). Red: any fails (an interval on "
    "the wrong side). Amber: otherwise — an interval contains 0 (0.5 for sanity), fewer than "
    "5 images were measured (their intervals decide nothing), or a check was not run (a run "
    "without faithfulness or sanity is at most amber)."
)
"""The verdict rule, shown next to every verdict table."""

VERDICT_COLUMNS: tuple[str, ...] = (
    "model",
    "method",
    "layer",
    "class",
    "verdict",
    "localization",
    "loc_diff",
    "loc_lo",
    "loc_hi",
    "loc_baseline",
    "faithfulness",
    "faith_gain",
    "faith_lo",
    "faith_hi",
    "sanity",
    "sanity_rho",
    "n_images",
    "why",
)

PASS, FAIL, UNCLEAR, NOT_MEASURED = "pass", "fail", "unclear", "not measured"

MIN_IMAGES = 5
"""Fewer images than this in a class: its intervals decide nothing (the component is
"unclear"); a bootstrap of one image is a zero-width interval, not certainty."""


def faithfulness_gain(rows: pd.DataFrame) -> pd.Series:
    """Per row ``(insertion − deletion) − (insertion_random − deletion_random)`` AUC; NaN where a
    part is missing (or the run had no faithfulness columns).
    """
    if not set(FAITHFULNESS_COLUMNS[:4]) <= set(rows.columns):
        return pd.Series(np.nan, index=rows.index, dtype=np.float64)
    num = {c: pd.to_numeric(rows[c], errors="coerce") for c in FAITHFULNESS_COLUMNS[:4]}
    return (num["insertion_auc"] - num["deletion_auc"]) - (
        num["insertion_auc_random"] - num["deletion_auc_random"]
    )


def _figures(result: EvalResult, rows: pd.DataFrame) -> list[str]:
    keys = [*METRICS, *(box_key(t) for t in result.config.box_thresholds)]
    keys += [c for c in FAITHFULNESS_COLUMNS if c in rows.columns]
    return [*keys, FAITHFULNESS_FIGURE]


def confidence_table(
    result: EvalResult,
    *,
    by_size: bool = True,
    n_boot: int = S.N_BOOT,
    seed: int = S.SEED,
    level: float = S.LEVEL,
    progress: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """:func:`cam_core.metrics.stats.bootstrap_table` of a result: every summary figure (the
    localization metrics, MaxBoxAccV2, PxAP, the faithfulness columns when measured and
    :data:`FAITHFULNESS_FIGURE`) per (method, layer, class / "all", box size / "all"), with its
    interval and the paired difference against the class's best baseline.
    """
    rows = result.rows_frame()
    if "box_share" not in rows.columns:
        rows["box_share"] = np.nan
    for c in FAITHFULNESS_COLUMNS:  # a column of Nones is not a figure of this run
        if c in rows.columns and rows[c].isna().all():
            rows = rows.drop(columns=c)
    rows[FAITHFULNESS_FIGURE] = faithfulness_gain(rows)
    parts = {k: a.parts for k, a in result.accumulators.items() if k[2] != "all"}
    return S.bootstrap_table(
        rows,
        parts,
        _figures(result, rows),
        list(BASELINES),
        by_size=by_size,
        n_boot=n_boot,
        seed=seed,
        level=level,
        progress=progress,
    )


def summary_with_ci(result: EvalResult, ci: pd.DataFrame | None = None) -> pd.DataFrame:
    """:meth:`EvalResult.summary` with, per figure, ``<figure>_lo`` / ``_hi`` (95 % interval)
    and ``<figure>_diff`` / ``_diff_lo`` / ``_diff_hi`` (paired difference to the best baseline
    of the class), plus the faithfulness figures when measured (all sizes pooled).
    """
    ci = confidence_table(result, by_size=False) if ci is None else ci
    summary = result.summary()
    if ci.empty:
        return summary
    pooled = ci[ci["size"] == S.ALL_SIZES]
    wide = pooled.pivot_table(
        index=["method", "layer", "class"],
        columns="figure",
        values=["value", "lo", "hi", "diff", "diff_lo", "diff_hi"],
        aggfunc="first",
        dropna=False,
    )
    figures = list(dict.fromkeys(pooled["figure"]))
    out = summary.set_index(["method", "layer", "class"])
    for fig in figures:
        if fig not in out.columns:
            out[fig] = wide.get(("value", fig))
        for part in ("lo", "hi", "diff", "diff_lo", "diff_hi"):
            if (part, fig) in wide.columns:
                out[f"{fig}_{part}"] = wide[(part, fig)]
    return out.reset_index()


def _component(lo: float, hi: float, n: int) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return NOT_MEASURED
    if n < MIN_IMAGES:  # a bootstrap of one or two images has no spread to speak of
        return UNCLEAR
    if lo > 0.0:
        return PASS
    if hi < 0.0:
        return FAIL
    return UNCLEAR


def _sanity_component(last: pd.Series) -> str:
    """The randomization check at full depth: its ``passed`` flag, unless fewer than
    :data:`MIN_IMAGES` images were checked or its interval straddles the threshold (unclear).
    """
    n = last.get("n")
    if n is not None and math.isfinite(float(n)) and int(n) < MIN_IMAGES:
        return UNCLEAR
    lo, hi, th = (float(last.get(k, math.nan)) for k in ("ci_low", "ci_high", "threshold"))
    if all(math.isfinite(v) for v in (lo, hi, th)) and lo < th <= hi:
        return UNCLEAR
    return PASS if bool(last["passed"]) else FAIL


def verdicts(
    ci: pd.DataFrame, sanity: pd.DataFrame | None, model: str, *, baselines: Sequence[str] = ()
) -> pd.DataFrame:
    """The verdict per (method, layer, class) of ``ci`` (:func:`confidence_table`, all box sizes
    pooled) and ``sanity`` (:func:`cam_core.sanity.sanity_frame`; None: not run), columns
    :data:`VERDICT_COLUMNS`; the rule is :data:`RULE`.
    """
    base = set(baselines) or set(BASELINES)
    pooled = ci[(ci["size"] == S.ALL_SIZES) & ~ci["method"].isin(base)]
    passed: dict[tuple[str, str], tuple[str, float]] = {}
    if sanity is not None and len(sanity):
        full = sanity[sanity["check"] == "randomization"]
        for (m, lay), g in full.groupby(["method", "layer"], sort=False):
            last = g.sort_values("depth").iloc[-1]
            passed[(m, lay)] = (_sanity_component(last), float(last["abs_spearman"]))
    out: list[dict[str, Any]] = []
    for (m, lay, cls), g in pooled.groupby(["method", "layer", "class"], sort=False):
        by_fig = g.set_index("figure")
        rec: dict[str, Any] = {"model": model, "method": m, "layer": lay, "class": cls}
        rec["n_images"] = int(g["n_images"].max())
        if LOCALIZATION_FIGURE in by_fig.index:
            r = by_fig.loc[LOCALIZATION_FIGURE]
            rec.update(
                localization=_component(r["diff_lo"], r["diff_hi"], rec["n_images"]),
                loc_diff=r["diff"],
                loc_lo=r["diff_lo"],
                loc_hi=r["diff_hi"],
                loc_baseline=r["baseline"],
            )
        else:
            rec.update(localization=NOT_MEASURED, loc_diff=math.nan, loc_lo=math.nan)
            rec.update(loc_hi=math.nan, loc_baseline=None)
        if FAITHFULNESS_FIGURE in by_fig.index:
            r = by_fig.loc[FAITHFULNESS_FIGURE]
            rec.update(
                faithfulness=_component(r["lo"], r["hi"], rec["n_images"]),
                faith_gain=r["value"],
                faith_lo=r["lo"],
                faith_hi=r["hi"],
            )
        else:
            rec.update(faithfulness=NOT_MEASURED, faith_gain=math.nan)
            rec.update(faith_lo=math.nan, faith_hi=math.nan)
        if (m, lay) in passed:
            verdict_part, rho = passed[(m, lay)]
            rec.update(sanity=verdict_part, sanity_rho=rho)
        else:
            rec.update(sanity=NOT_MEASURED, sanity_rho=math.nan)
        parts = {k: rec[k] for k in ("localization", "faithfulness", "sanity")}
        if all(v == PASS for v in parts.values()):
            rec["verdict"] = "green"
        elif any(v == FAIL for v in parts.values()):
            rec["verdict"] = "red"
        else:
            rec["verdict"] = "amber"
        rec["why"] = "; ".join(f"{k} {v}" for k, v in parts.items() if v != PASS) or "all pass"
        if rec["n_images"] < MIN_IMAGES:
            rec["why"] += f" (only {rec['n_images']} images: intervals not trusted)"
        out.append(rec)
    return pd.DataFrame(out, columns=list(VERDICT_COLUMNS))


def verdict_table(result: EvalResult, ci: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`verdicts` of a result (its ``sanity`` frame when the run had one)."""
    ci = confidence_table(result, by_size=False) if ci is None else ci
    sanity = getattr(result, "sanity", None)
    return verdicts(ci, sanity, result.model)
