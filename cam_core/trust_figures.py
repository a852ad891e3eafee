"""Figures and tables of :mod:`cam_core.verdict`: bars with 95 % intervals, interval and
paired-difference tables, the box-size split and the coloured verdict table (for the Evaluate
page and the HTML report; no Streamlit here).
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from cam_core.metrics import stats as S
from cam_core.verdict import FAITHFULNESS_FIGURE
from cam_core.vocabulary import column_name, is_baseline, method_name, metric_heading

__all__ = [
    "FIGURE_NAMES",
    "VERDICT_COLOURS",
    "ci_bars",
    "ci_table",
    "diff_table",
    "figure_name",
    "size_table",
    "styled_verdicts",
    "verdict_html",
]

FIGURE_NAMES: dict[str, str] = {
    "deletion_auc": "Deletion AUC (lower is better)",
    "insertion_auc": "Insertion AUC",
    "deletion_auc_random": "Deletion AUC, random order",
    "insertion_auc_random": "Insertion AUC, random order",
    "road": "ROAD (combined)",
    "avg_drop": "Average drop in confidence (lower is better)",
    "increase": "Increase in confidence",
    FAITHFULNESS_FIGURE: "Faithfulness gain over a random order",
}
"""Display names of the figures :mod:`cam_core.vocabulary` does not name."""

VERDICT_COLOURS = {"green": "#bbf7d0", "amber": "#fde68a", "red": "#fecaca"}


def figure_name(key: str) -> str:
    """Display name of a summary figure."""
    return FIGURE_NAMES.get(key) or metric_heading(key)


def shown_method(method: str) -> str:
    """A method's or a baseline's display name ("Grad-CAM", "Centre point")."""
    return method_name(method)


def _named(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its ``method`` column in display names."""
    return table.assign(method=table["method"].map(shown_method)) if "method" in table else table


def _group(method: str, layer: str, layers: int) -> str:
    """A bar group's id ("gradcam @ layer4", "baseline:uniform"); the bars name it
    (:func:`~cam_core.vocabulary.column_name`).
    """
    return method if is_baseline(method) or layers <= 1 else f"{method} @ {layer}"


def _pooled(ci: pd.DataFrame, figure: str, size: str = S.ALL_SIZES) -> pd.DataFrame:
    part = ci[(ci["figure"] == figure) & (ci["size"] == size)]
    layers = part.loc[~part["method"].map(is_baseline), "layer"].nunique()
    return part.assign(
        group=[_group(m, lay, layers) for m, lay in zip(part["method"], part["layer"], strict=True)]
    )


def ci_bars(ci: pd.DataFrame, figure: str, size: str = S.ALL_SIZES) -> go.Figure:
    """Grouped bars of ``figure`` per class, one bar per method (baselines grey, hatched), each
    with its 95 % bootstrap interval as an error bar; ``ci`` is
    :func:`cam_core.verdict.confidence_table`.
    """
    part = _pooled(ci, figure, size)
    if part.empty:
        raise KeyError(f"no figure {figure!r} (size {size!r}) in the table")
    classes = list(dict.fromkeys(part["class"]))
    groups = list(dict.fromkeys(part.sort_values("method", key=lambda s: s.map(is_baseline),
                                                 kind="stable")["group"]))  # fmt: skip
    fig = go.Figure()
    greys = ("#9aa5b1", "#bcc5cf", "#d9dee4")
    n_base = 0
    for g in groups:
        sub = part[part["group"] == g].set_index("class").reindex(classes)
        marker: dict[str, Any] = {}
        if is_baseline(g):
            marker = {"color": greys[n_base % len(greys)], "pattern": {"shape": "/"}}
            n_base += 1
        name = column_name(g)
        fig.add_bar(
            x=classes,
            y=sub["value"].tolist(),
            name=name,
            marker=marker,
            error_y={
                "type": "data",
                "symmetric": False,
                "array": (sub["hi"] - sub["value"]).tolist(),
                "arrayminus": (sub["value"] - sub["lo"]).tolist(),
                "thickness": 1.2,
            },
            customdata=sub[["lo", "hi", "n_images"]].to_numpy(),
            hovertemplate=f"{name}<br>%{{x}}: %{{y:.3f}} "
            "[%{customdata[0]:.3f}, %{customdata[1]:.3f}], %{customdata[2]} images<extra></extra>",
        )
    n_all = part.loc[part["class"] == "all", "n_images"].max()
    size_txt = "" if size == S.ALL_SIZES else f", boxes covering {size} of the image"
    fig.update_layout(
        barmode="group",
        height=400,
        margin={"l": 4, "r": 4, "t": 48, "b": 4},
        title={
            "text": f"{figure_name(figure)} per class with 95 % bootstrap intervals "
            f"(n = {0 if pd.isna(n_all) else int(n_all)} images{size_txt})",
            "font": {"size": 14},
        },
        yaxis={"title": figure_name(figure)},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def _cell(v: float, lo: float, hi: float, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(v)} [{f.format(lo)}, {f.format(hi)}]"


def ci_table(ci: pd.DataFrame, figures: list[str] | None = None) -> pd.DataFrame:
    """Rows (method, layer, class) × figures, each cell "value [lo, hi]" (all box sizes)."""
    part = ci[ci["size"] == S.ALL_SIZES]
    if figures is not None:
        part = part[part["figure"].isin(figures)]
    part = part.assign(
        cell=[_cell(*t) for t in zip(part["value"], part["lo"], part["hi"], strict=True)]
    )
    order = list(dict.fromkeys(part["figure"]))
    table = part.pivot_table(
        index=["method", "layer", "class"], columns="figure", values="cell", aggfunc="first",
        sort=False,
    ).reindex(columns=order)  # fmt: skip
    return _named(table.rename(columns=figure_name).reset_index())


def diff_table(ci: pd.DataFrame, figures: list[str] | None = None) -> pd.DataFrame:
    """Methods only: rows (method, layer, class) × figures, each cell "difference to the class's
    best baseline [lo, hi] (baseline)" (paired, all box sizes).
    """
    part = ci[(ci["size"] == S.ALL_SIZES) & ci["diff"].notna()]
    if figures is not None:
        part = part[part["figure"].isin(figures)]
    cells = [
        f"{_cell(d, lo, hi, signed=True)} vs {column_name(str(b))}"
        for d, lo, hi, b in zip(part["diff"], part["diff_lo"], part["diff_hi"], part["baseline"],
                                strict=True)
    ]  # fmt: skip
    part = part.assign(cell=cells)
    order = list(dict.fromkeys(part["figure"]))
    table = part.pivot_table(
        index=["method", "layer", "class"], columns="figure", values="cell", aggfunc="first",
        sort=False,
    ).reindex(columns=order)  # fmt: skip
    return _named(table.rename(columns=figure_name).reset_index())


def size_table(ci: pd.DataFrame, figure: str) -> pd.DataFrame:
    """``figure`` per (method, layer, class) × box size ("< 10 %", "10–50 %", "> 50 %", all),
    cells "value [lo, hi] (n)"; empty cells: no image of that size.
    """
    part = ci[ci["figure"] == figure]
    part = part.assign(
        cell=[
            f"{_cell(v, lo, hi)} ({n})"
            for v, lo, hi, n in zip(part["value"], part["lo"], part["hi"], part["n_images"],
                                    strict=True)
        ]
    )  # fmt: skip
    sizes = [b[0] for b in S.SIZE_BINS if b[0] in set(part["size"])] + [S.ALL_SIZES]
    table = part.pivot_table(
        index=["method", "layer", "class"], columns="size", values="cell", aggfunc="first",
        sort=False,
    ).reindex(columns=sizes)  # fmt: skip
    return _named(table.fillna("–").reset_index())


def styled_verdicts(table: pd.DataFrame) -> Any:
    """A verdict table (:func:`cam_core.verdict.verdicts`) as a pandas Styler: the verdict cell
    green / amber / red, figures to three decimals.
    """
    table = _named(table)
    nums = [c for c in table.columns if table[c].dtype.kind == "f"]

    def colour(col: pd.Series) -> list[str]:
        return [f"background-color: {VERDICT_COLOURS.get(v, '')}" for v in col]

    return table.style.apply(colour, subset=["verdict"]).format("{:.3f}", subset=nums, na_rep="–")


def verdict_html(table: pd.DataFrame) -> str:
    """A verdict table as an HTML table with coloured verdict cells (for the report)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for rec in table.to_dict("records"):
        cells = []
        for k, v in rec.items():
            style = f" style='background:{VERDICT_COLOURS[v]}'" if k == "verdict" else ""
            text = f"{v:.3f}" if isinstance(v, float) and not math.isnan(v) else v
            text = "–" if isinstance(v, float) and math.isnan(v) else text
            cells.append(f"<td{style}>{html.escape(str(text))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
