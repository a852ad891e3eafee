"""Right for the right reason: classification (correct / wrong) × localization (hit / miss).

Over the rows of one evaluation (:meth:`cam_core.evaluation.EvalResult.rows_frame`) and one
(method, layer), every scoreable (image, class) row falls in one quadrant:

- ``correct-miss``: the class was predicted correctly **but the map misses the class's boxes** —
  the case accuracy hides; listed first everywhere;
- ``correct-hit``: right for the right reason;
- ``wrong-hit``: wrong prediction, yet the map lands on the defect;
- ``wrong-miss``: wrong, and looking elsewhere.

A map *hits* when its pointing-game figure is true: the map's hottest pixel lies inside a GT box
of the explained class (``hit="pointing"``, strict); ``hit="pointing_tol"`` allows the classic
15 px tolerance. Rows without boxes of the class, with an error, or whose correctness is unknown
(no file class) are left out and counted apart (:func:`quadrant_counts`' ``unscored``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "HIT_COLUMNS",
    "QUADRANTS",
    "QUADRANT_NAMES",
    "confusion",
    "misclassified",
    "quadrant_counts",
    "quadrant_rows",
]

QUADRANTS: tuple[str, ...] = ("correct-miss", "correct-hit", "wrong-hit", "wrong-miss")
"""Quadrant ids in reading order ("correct class, map off the defect" first)."""

QUADRANT_NAMES: dict[str, str] = {
    "correct-miss": "Correct class, map off the defect",
    "correct-hit": "Correct class, map on the defect",
    "wrong-hit": "Wrong class, map on the defect",
    "wrong-miss": "Wrong class, map off the defect",
}
"""What a person reads for each quadrant id."""

HIT_COLUMNS: tuple[str, ...] = ("pointing", "pointing_tol")
"""Row columns that can define a hit (boolean per row)."""


def _check(rows: pd.DataFrame, hit: str) -> None:
    if hit not in HIT_COLUMNS:
        raise KeyError(f"unknown hit rule {hit!r}; valid: {', '.join(HIT_COLUMNS)}")
    missing = {"stem", "class", "method", "layer", "correct", "error", hit} - set(rows.columns)
    if missing:
        raise KeyError(f"rows lack the columns {sorted(missing)} (not an evaluation's rows?)")


def quadrant_rows(
    rows: pd.DataFrame, method: str, layer: str, hit: str = "pointing"
) -> pd.DataFrame:
    """The scoreable rows of (``method``, ``layer``) with a ``quadrant`` column (a
    :data:`QUADRANTS` id), ordered by quadrant, then class, then lowest energy in the boxes
    first. KeyError for an unknown ``hit`` rule or rows missing a column.
    """
    _check(rows, hit)
    keep = rows[(rows["method"] == method) & (rows["layer"] == layer)]
    keep = keep[keep["error"].isna() & keep[hit].notna() & keep["correct"].notna()]
    correct = keep["correct"].astype(bool).to_numpy()
    hits = keep[hit].astype(bool).to_numpy()
    quadrant = np.where(
        correct,
        np.where(hits, "correct-hit", "correct-miss"),
        np.where(hits, "wrong-hit", "wrong-miss"),
    )
    out = keep.assign(quadrant=pd.Categorical(quadrant, categories=list(QUADRANTS), ordered=True))
    by = ["quadrant", "class"] + (["energy"] if "energy" in out.columns else []) + ["stem"]
    return out.sort_values(by, kind="stable").reset_index(drop=True)


def quadrant_counts(
    rows: pd.DataFrame,
    method: str,
    layer: str,
    hit: str = "pointing",
    classes: Sequence[str] = (),
) -> pd.DataFrame:
    """Per class (``classes`` order first, then any other) and ``all``: the count of each
    quadrant, ``n`` (their sum), ``unscored`` (rows of the method and layer left out: no boxes,
    an error or unknown correctness) and ``off_share`` = correct-miss / correct (NaN without a
    correct row): how much of the accuracy rests on maps that miss the defect.
    """
    scored = quadrant_rows(rows, method, layer, hit)
    mine = rows[(rows["method"] == method) & (rows["layer"] == layer)]
    present = list(
        dict.fromkeys([*(c for c in classes if c in set(mine["class"])), *mine["class"]])
    )
    out = []
    for cls in [*present, "all"]:
        part = scored if cls == "all" else scored[scored["class"] == cls]
        total = len(mine) if cls == "all" else int((mine["class"] == cls).sum())
        counts = {q: int((part["quadrant"] == q).sum()) for q in QUADRANTS}
        n_correct = counts["correct-miss"] + counts["correct-hit"]
        out.append(
            {
                "class": cls,
                **counts,
                "n": len(part),
                "unscored": total - len(part),
                "off_share": counts["correct-miss"] / n_correct if n_correct else np.nan,
            }
        )
    return pd.DataFrame(out, columns=["class", *QUADRANTS, "n", "unscored", "off_share"])


def misclassified(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows whose prediction is wrong (``correct`` is False; unknown correctness left out)."""
    if "correct" not in rows.columns:
        raise KeyError("rows lack the column 'correct' (not an evaluation's rows?)")
    known = rows[rows["correct"].notna()]
    return known[~known["correct"].astype(bool)].reset_index(drop=True)


def confusion(rows: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Images of the evaluated split by true file class (rows, ``label``) and top-1 predicted
    class (columns, ``predicted``), counted once per image: a (K, K) DataFrame over ``classes``.

    Images without a file class or a prediction (an unreadable image) are left out. KeyError when
    the rows carry no ``predicted`` column (a row store written before it existed).
    """
    if "predicted" not in rows.columns:
        raise KeyError(
            "these rows carry no predicted class (written by an older version); run the "
            "evaluation again"
        )
    per_image = rows.dropna(subset=["label", "predicted"]).drop_duplicates("stem")
    names = list(classes)
    matrix = pd.DataFrame(
        0, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted")
    )
    for (true, pred), n in per_image.groupby(["label", "predicted"]).size().items():
        if true in matrix.index and pred in matrix.columns:
            matrix.loc[true, pred] = int(n)
    return matrix
