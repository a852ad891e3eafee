"""Plotly charts of the sanity check (:mod:`cam_core.sanity`): similarity vs randomization depth.

Input is :func:`cam_core.sanity.sanity_frame`'s DataFrame (also ``EvalResult.sanity`` and a
run's ``sanity.csv``), so a page draws a chart without recomputing anything.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from cam_core.vocabulary import method_name

__all__ = ["sanity_figure", "sanity_figures"]


def sanity_figure(frame: pd.DataFrame, method: str, layer: str | None = None) -> go.Figure:
    """Mean |Spearman ρ| and mean SSIM to the intact model's map, against the randomized depth
    (x: "intact", then "+<block>" cumulatively, head first), for one (method, layer) — the first
    layer of ``method`` when ``layer`` is None. The pass threshold is a dashed line, the
    random-logit ρ a dotted one; the title carries the verdict. KeyError naming what is there
    when the frame has no such rows.
    """
    rows = frame[frame["method"] == method]
    if layer is None and len(rows):
        layer = str(rows["layer"].iloc[0])
    rows = rows[rows["layer"] == layer]
    if rows.empty:
        pairs = sorted({(m, lay) for m, lay in zip(frame["method"], frame["layer"], strict=True)})
        raise KeyError(f"no sanity rows for method {method!r}, layer {layer!r}; there: {pairs}")
    walk = rows[rows["check"] == "randomization"].sort_values("depth")
    x = ["intact" if d == 0 else f"+{b}" for d, b in zip(walk["depth"], walk["block"], strict=True)]
    threshold = float(rows["threshold"].iloc[0])
    passed = bool(rows["passed"].iloc[0])
    fig = go.Figure()
    fig.add_scatter(
        x=x,
        y=walk["abs_spearman"],
        mode="lines+markers",
        name="|Spearman ρ| (95 % CI over images)",
        error_y={
            "type": "data",
            "symmetric": False,
            "array": (walk["ci_high"] - walk["abs_spearman"]).fillna(0),
            "arrayminus": (walk["abs_spearman"] - walk["ci_low"]).fillna(0),
        },
        hovertemplate="%{x}: |ρ| %{y:.3f}<extra></extra>",
    )
    fig.add_scatter(
        x=x,
        y=walk["ssim"],
        mode="lines+markers",
        name="SSIM",
        hovertemplate="%{x}: SSIM %{y:.3f}<extra></extra>",
    )
    fig.add_hline(
        y=threshold,
        line_dash="dash",
        line_color="#6b7280",
        annotation_text=f"pass: |ρ| < {threshold:g} when fully randomized",
        annotation_position="top right",
    )
    logit = rows[rows["check"] == "random-logit"]
    if len(logit) and pd.notna(logit["spearman"].iloc[0]):
        rho = float(logit["spearman"].iloc[0])
        fig.add_hline(
            y=rho,
            line_dash="dot",
            line_color="#d97706",
            annotation_text=f"random other class: ρ {rho:.2f}",
            annotation_position="bottom left",
        )
    verdict = "passes" if passed else "fails"
    fig.update_layout(
        title={
            "text": f"{method_name(method)} @ {layer}: {verdict} the randomization check",
            "font": {"size": 14},
        },
        xaxis_title="parameters re-initialised from the head down",
        yaxis={"title": "similarity to the intact model's map", "range": [-0.05, 1.05]},
        height=360,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 1, "xanchor": "right"},
    )
    return fig


def sanity_figures(frame: pd.DataFrame) -> dict[tuple[str, str], go.Figure]:
    """One :func:`sanity_figure` per (method, layer) of ``frame``, in frame order."""
    pairs = dict.fromkeys(zip(frame["method"], frame["layer"], strict=True))
    return {(m, lay): sanity_figure(frame, m, lay) for m, lay in pairs}
