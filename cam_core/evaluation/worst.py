"""Worst cases of an evaluation: the method rows with the lowest figure, for a person to inspect.

Dataset-level metrics (MaxBoxAccV2, PxAP) have no value per row; their rows are ranked by the
per-row figure each is built from (:data:`ROW_FIGURE`), and a page says which.
"""

from __future__ import annotations

import pandas as pd

from cam_core.vocabulary import is_baseline

__all__ = ["ROW_FIGURE", "ranking_figure", "worst_cases"]

ROW_FIGURE: dict[str, str] = {"maxboxacc_v2": "box_iou", "pxap": "iou"}
"""Dataset-level metric → the per-row figure worst cases are ranked by. MaxBoxAccV2 counts maps
with a box overlapping a GT box, so its rows rank by their best map-box IoU at τ; PxAP scores map
pixels against box pixels, so its rows rank by their pixel IoU at τ."""

_COLUMNS = ("stem", "class", "method", "layer", "pointing", "energy", "iou", "score", "correct")


def ranking_figure(metric: str) -> str:
    """The row column :func:`worst_cases` ranks ``metric`` by (itself for a per-row metric)."""
    return ROW_FIGURE.get(metric, metric)


def worst_cases(rows: pd.DataFrame, metric: str = "energy", n: int = 10) -> pd.DataFrame:
    """The ``n`` scoreable method rows (no baselines, no errors) with the lowest ``metric``.

    ``rows`` is :meth:`cam_core.evaluation.EvalResult.rows_frame`; a dataset-level metric ranks
    by :func:`ranking_figure`. Ties are broken by energy in the boxes; the result keeps stem,
    class, method, layer, the ranking figure, the figures, score and correct. KeyError names an
    unknown metric and the valid ones.
    """
    column = ranking_figure(metric)
    if column not in rows.columns:
        valid = [c for c in rows.columns if c not in _COLUMNS[:4]] + list(ROW_FIGURE)
        raise KeyError(f"Unknown metric {metric!r}; valid: {valid}")
    keep = rows[~rows["method"].astype(str).map(is_baseline)]
    keep = keep[keep["error"].isna() & keep[column].notna()]
    keep = keep.assign(**{column: keep[column].astype(float)})
    by = [column] + (["energy"] if column != "energy" else [])
    columns = list(dict.fromkeys([*_COLUMNS[:4], column, *_COLUMNS[4:]]))
    return keep.sort_values(by, kind="stable").head(n)[columns].reset_index(drop=True)
