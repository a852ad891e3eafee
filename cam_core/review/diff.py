"""Release against release: two checkpoints evaluated on the same images with the same settings.

:func:`diff_results` pairs the rows of two evaluations by (image, class) for one method (each
release at its own layer: by default its first) and gives, per class and over all classes:

- ``accuracy`` (per image: the prediction is correct) and every localization figure of the rows
  (:data:`cam_core.evaluation.METRICS`: pointing, pointing ±15 px, energy, energy ratio, IoU,
  box IoU), for release A, release B and B − A;
- a **paired** bootstrap interval of B − A: each draw resamples the *images* (seeded; the same
  draw for A and B, so what both releases share cancels), :mod:`cam_core.metrics.stats`'
  ``resample_counts`` and percentile interval; 1,000 draws, 95 %, seed 0 by default. An interval
  that excludes 0 is a change beyond resampling noise;
- the images that changed: ``hit→miss`` / ``miss→hit`` (the pointing game at the class's boxes)
  and ``correct→wrong`` / ``wrong→correct``.

Only (image, class) pairs scored in both releases are compared. Settings that change the
figures (data, split, target rule, τ, tolerance, flip averaging) must be equal, else ValueError
naming them. :func:`diff_checkpoints` evaluates both checkpoints; :func:`write_diff` writes
``diff.csv``, ``changes.csv`` and ``diff.html``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cam_core.data import Sample
from cam_core.evaluation import METRICS, EvalConfig, EvalResult, Progress, evaluate
from cam_core.evaluation.rows import resolve_layers
from cam_core.explain import Explainer
from cam_core.metrics.stats import LEVEL, N_BOOT, SEED, percentile_ci, resample_counts
from cam_core.vocabulary import method_name, metric_name

__all__ = [
    "CHANGES",
    "FIGURES",
    "ReleaseDiff",
    "diff_checkpoints",
    "diff_html",
    "diff_results",
    "evaluate_like",
    "styled_table",
    "write_diff",
]

FIGURES: tuple[str, ...] = ("accuracy", *METRICS)
"""Figures compared, in table order."""

CHANGES: tuple[str, ...] = ("hit→miss", "correct→wrong", "miss→hit", "wrong→correct")
"""Kinds of per-image change, worse first."""

_SAME = ("data", "split", "target_rule", "tau", "tolerance", "flip_smooth")


@dataclass(frozen=True)
class ReleaseDiff:
    """What :func:`diff_results` found.

    ``table``: one row per (class, figure) — class ("all" last), figure, ``a``, ``b``,
    ``diff`` (b − a), ``lo``/``hi`` (paired bootstrap interval of diff), ``n_images``,
    ``significant`` (the interval excludes 0). ``changes``: one row per changed (image, class) —
    stem, class, change (a :data:`CHANGES` kind), energy and score in A and B. ``a`` / ``b``:
    "model · method @ layer" of each release.
    """

    table: pd.DataFrame
    changes: pd.DataFrame
    a: str
    b: str
    method: str
    layer_a: str
    layer_b: str
    n_images: int


def _check_same(a: EvalConfig, b: EvalConfig) -> None:
    differ = [k for k in _SAME if getattr(a, k) != getattr(b, k)]
    if differ:
        said = ", ".join(f"{k}: {getattr(a, k)!r} vs {getattr(b, k)!r}" for k in differ)
        raise ValueError(f"the two evaluations differ in settings ({said}); run both alike")


def _rows(result: EvalResult, method: str, layer: str) -> pd.DataFrame:
    rows = result.rows_frame()
    rows = rows[(rows["method"] == method) & (rows["layer"] == layer) & rows["error"].isna()]
    return rows.drop_duplicates(["stem", "class"]).set_index(["stem", "class"])


def _paired_draws(
    stems: pd.Index, a: pd.Series, b: pd.Series, w: np.ndarray
) -> tuple[float, float, float, float]:
    """(a, b, b − a, per draw …) ratio means of per-(stem, x) values paired on index; returns
    point a, point b and the interval of b − a.
    """
    ok = a.notna() & b.notna()
    av, bv = a[ok].astype(float), b[ok].astype(float)
    if av.empty:
        return math.nan, math.nan, math.nan, math.nan
    pos = stems.get_indexer(av.index.get_level_values(0))
    sa, sb, cnt = (np.zeros(len(stems)) for _ in range(3))
    np.add.at(sa, pos, av.to_numpy())
    np.add.at(sb, pos, bv.to_numpy())
    np.add.at(cnt, pos, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = (w @ sb - w @ sa) / (w @ cnt)
    lo, hi = percentile_ci(diff, LEVEL)
    return float(sa.sum() / cnt.sum()), float(sb.sum() / cnt.sum()), float(lo), float(hi)


def diff_results(
    a: EvalResult,
    b: EvalResult,
    *,
    method: str | None = None,
    layer_a: str | None = None,
    layer_b: str | None = None,
    hit: str = "pointing",
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> ReleaseDiff:
    """Per-class B − A with paired bootstrap intervals, and the images that changed (see the
    module). ``method`` defaults to A's first method (B must have it); layers to each result's
    first. ValueError for different settings, a method or layer a result lacks, or no image
    in common.
    """
    _check_same(a.config, b.config)
    method = method or a.config.methods[0]
    for r, name in ((a, "A"), (b, "B")):
        if method not in r.config.methods:
            raise ValueError(f"release {name} has no {method!r} maps (methods {r.config.methods})")
    layer_a, layer_b = layer_a or a.layers[0], layer_b or b.layers[0]
    if layer_a not in a.layers or layer_b not in b.layers:
        raise ValueError(f"layers {layer_a!r}/{layer_b!r} not in {a.layers} / {b.layers}")
    ra, rb = _rows(a, method, layer_a), _rows(b, method, layer_b)
    common = ra.index.intersection(rb.index)
    if common.empty:
        raise ValueError("the two evaluations share no (image, class) row: not the same images")
    ra, rb = ra.loc[common], rb.loc[common]
    records = []
    classes = [c for c in dict.fromkeys([*a.classes, *common.get_level_values(1)])]
    classes = [c for c in classes if c in set(common.get_level_values(1))]
    for cls in [*classes, "all"]:
        sel = common if cls == "all" else common[common.get_level_values(1) == cls]
        stems = pd.Index(sorted(set(sel.get_level_values(0))))
        w = resample_counts(len(stems), n_boot, seed)
        ca, cb = ra.loc[sel], rb.loc[sel]
        for fig in FIGURES:
            if fig == "accuracy":  # one value per image: its first row's correctness
                one_a = ca["correct"][~ca.index.get_level_values(0).duplicated()]
                one_b = cb["correct"].loc[one_a.index]
                va, vb, lo, hi = _paired_draws(stems, one_a, one_b, w)
            else:
                va, vb, lo, hi = _paired_draws(stems, ca[fig], cb[fig], w)
            if math.isnan(va):
                continue
            records.append(
                {
                    "class": cls,
                    "figure": fig,
                    "a": va,
                    "b": vb,
                    "diff": vb - va,
                    "lo": lo,
                    "hi": hi,
                    "n_images": len(stems),
                    "significant": bool(lo > 0 or hi < 0),
                }
            )
    table = pd.DataFrame(
        records,
        columns=["class", "figure", "a", "b", "diff", "lo", "hi", "n_images", "significant"],
    )
    return ReleaseDiff(
        table=table,
        changes=_changes(ra, rb, hit),
        a=f"{a.model} · {method_name(method)} @ {layer_a}",
        b=f"{b.model} · {method_name(method)} @ {layer_b}",
        method=method,
        layer_a=layer_a,
        layer_b=layer_b,
        n_images=len(set(common.get_level_values(0))),
    )


def _changes(ra: pd.DataFrame, rb: pd.DataFrame, hit: str) -> pd.DataFrame:
    out = []
    for key in ra.index:
        x, y = ra.loc[key], rb.loc[key]
        kinds = []
        if pd.notna(x[hit]) and pd.notna(y[hit]) and bool(x[hit]) != bool(y[hit]):
            kinds.append("hit→miss" if bool(x[hit]) else "miss→hit")
        if (
            pd.notna(x["correct"])
            and pd.notna(y["correct"])
            and bool(x["correct"]) != bool(y["correct"])
        ):
            kinds.append("correct→wrong" if bool(x["correct"]) else "wrong→correct")
        for kind in kinds:
            out.append(
                {
                    "stem": key[0],
                    "class": key[1],
                    "change": kind,
                    "energy_a": x["energy"],
                    "energy_b": y["energy"],
                    "score_a": x["score"],
                    "score_b": y["score"],
                }
            )
    columns = ["stem", "class", "change", "energy_a", "energy_b", "score_a", "score_b"]
    frame = pd.DataFrame(out, columns=columns)
    order = {k: i for i, k in enumerate(CHANGES)}
    frame = frame.assign(_o=frame["change"].map(order)).sort_values(["_o", "stem"], kind="stable")
    return frame.drop(columns="_o").reset_index(drop=True)


def diff_checkpoints(
    cfg: EvalConfig,
    checkpoint_b: str,
    *,
    samples: Sequence[Sample] | None = None,
    progress: Progress | None = None,
    out: str | Path | None = None,
) -> tuple[EvalResult, EvalResult, ReleaseDiff]:
    """Evaluate ``cfg`` (release A: ``cfg.checkpoint``) and the same settings with
    ``checkpoint_b``, then :func:`diff_results`. With ``out``, each run's rows are stored
    (resumable) under ``out/a`` and ``out/b``.
    """
    cfg_a = replace(cfg, out=str(Path(out) / "a") if out else None)
    cfg_b = replace(cfg, checkpoint=checkpoint_b, out=str(Path(out) / "b") if out else None)
    ra = evaluate(cfg_a, samples=samples, progress=progress)
    rb = evaluate(cfg_b, samples=samples, progress=progress)
    return ra, rb, diff_results(ra, rb)


def evaluate_like(
    result: EvalResult,
    explainer: Explainer,
    samples: Sequence[Sample],
    checkpoint: str = "",
    *,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[EvalResult, str]:
    """Release B (``explainer``) on the images ``result`` covers, with ``result``'s settings,
    ready for :func:`diff_results`; and a note ("" or why B's layer differs).

    B uses A's layers when it has them, else its own default layer (said in the note). Nothing
    is stored (``out`` None); the sanity and faithfulness extras are not run for B (the diff
    compares accuracy and the localization figures).
    """
    done = {r["stem"] for r in result.rows}
    mine = [s for s in samples if s.stem in done]
    cfg = replace(
        result.config,
        checkpoint=checkpoint or explainer.card.name,
        out=None,
        limit=None,
        **{k: False for k in ("sanity", "faithfulness") if hasattr(result.config, k)},
    )
    note = ""
    try:
        resolve_layers(explainer, cfg.layers)
    except KeyError:
        note = f"B has no layer {', '.join(result.layers)}: its default layer is used"
        cfg = replace(cfg, layers=(None,))
    out = evaluate(
        cfg, explainer=explainer, samples=mine, progress=progress, should_stop=should_stop
    )
    return out, note


def styled_table(table: pd.DataFrame) -> Any:
    """:attr:`ReleaseDiff.table` for a page: display names, the interval as text, rows whose
    interval excludes 0 green (B better) or red (B worse).
    """
    shown = table.assign(
        figure=["Accuracy" if f == "accuracy" else metric_name(f) for f in table["figure"]],
        interval=[
            f"[{lo:+.3f}, {hi:+.3f}]" for lo, hi in zip(table["lo"], table["hi"], strict=True)
        ],
    )[["class", "figure", "a", "b", "diff", "interval", "n_images", "significant"]]
    shown.columns = [
        "Class",
        "Figure",
        "A",
        "B",
        "B − A",
        "95 % interval",
        "Images",
        "Beyond noise",
    ]

    def colour(row: pd.Series) -> list[str]:
        if not row["Beyond noise"]:
            return [""] * len(row)
        tint = "#d8f0d8" if row["B − A"] > 0 else "#f6d5d5"
        return [f"background-color: {tint}"] * len(row)

    return shown.style.apply(colour, axis=1).format(
        {"A": "{:.3f}", "B": "{:.3f}", "B − A": "{:+.3f}"}
    )


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:+.3f}" if value < 0 else f"{value:.3f}"
    return html.escape(str(value))


def diff_html(diff: ReleaseDiff) -> str:
    """A small self-contained HTML page: the two releases, the per-class table (significant
    changes marked), and the changed images.
    """
    rows = []
    for r in diff.table.itertuples(index=False):
        colour = "" if not r.significant else ("#d8f0d8" if r.diff > 0 else "#f6d5d5")
        name = "Accuracy" if r.figure == "accuracy" else metric_name(r.figure)
        rows.append(
            f"<tr style='background:{colour}'><td>{html.escape(str(r[0]))}</td>"
            f"<td>{html.escape(name)}</td><td>{r.a:.3f}</td><td>{r.b:.3f}</td>"
            f"<td>{r.diff:+.3f}</td><td>[{r.lo:+.3f}, {r.hi:+.3f}]</td><td>{r.n_images}</td></tr>"
        )
    changes = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in rec) + "</tr>"
        for rec in diff.changes.itertuples(index=False)
    )
    head = "".join(f"<th>{html.escape(c)}</th>" for c in diff.changes.columns)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Release diff</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}</style></head><body>"
        f"<h1>Release diff</h1><p><b>A:</b> {html.escape(diff.a)}<br><b>B:</b> "
        f"{html.escape(diff.b)}<br>{diff.n_images} images scored by both. Differences are B − A; "
        "intervals are paired bootstrap 95 % intervals over images (1,000 draws, seed 0). "
        "Green / red: the interval excludes 0 (B better / worse).</p>"
        "<h2>Per class</h2><table><tr><th>class</th><th>figure</th><th>A</th><th>B</th>"
        f"<th>B − A</th><th>95 % interval</th><th>images</th></tr>{''.join(rows)}</table>"
        f"<h2>Images that changed ({len(diff.changes)})</h2><table><tr>{head}</tr>{changes}"
        "</table></body></html>"
    )


def write_diff(diff: ReleaseDiff, out: str | Path) -> list[Path]:
    """``out/diff.csv`` (per-class table), ``out/changes.csv`` and ``out/diff.html``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "diff.csv", folder / "changes.csv", folder / "diff.html"]
    diff.table.to_csv(paths[0], index=False, float_format="%.6g")
    diff.changes.to_csv(paths[1], index=False, float_format="%.6g")
    paths[2].write_text(diff_html(diff), encoding="utf-8")
    return paths
