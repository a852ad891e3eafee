"""Faithfulness of an engine's maps: the explainer's model as the scorer of
:mod:`cam_core.metrics.faithfulness`, under the model's lock and guard.

Used by the evaluation rows (:func:`faith_figures`) and by Explore (:func:`faith_curves`).
Seeds come from the image's stem, so a row's figures do not depend on the batch it was computed
in (a resumed run reproduces them).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from cam_core.cams.capture import class_probs, guarded
from cam_core.explain import Explainer
from cam_core.metrics import faithfulness as FM
from cam_core.models import preprocess

__all__ = [
    "FaithItem",
    "apply_faith",
    "curves_figure",
    "faith_curves",
    "faith_figures",
    "faith_table",
    "stem_seed",
]

MapKey = tuple[int, int, str, str]
"""(image index in the batch, class index, method, layer)."""


@dataclass(frozen=True)
class FaithItem:
    """One map to score: image index ``image`` (into the call's images), class index ``cls``,
    the map (H, W) at the image's resolution, and a ``name`` (its method) for its noise seed.
    """

    image: int
    cls: int
    cam: np.ndarray
    name: str


def stem_seed(*parts: object) -> int:
    """A stable 32-bit seed from ``parts`` (e.g. the stem, the class, the method)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def _scorer(ex: Explainer) -> FM.Scorer:
    multilabel = ex.card.multilabel

    def score(t: torch.Tensor) -> torch.Tensor:
        return class_probs(ex.model(t), multilabel)

    return score


def faith_figures(
    ex: Explainer,
    images: Sequence[np.ndarray],
    stems: Sequence[str],
    items: Sequence[FaithItem],
    *,
    steps: int = 20,
    fill: str = "blur",
    batch_size: int = 64,
) -> list[dict[str, float] | str]:
    """Per item: its :data:`~cam_core.metrics.faithfulness.FAITH_COLUMNS` figures, or the
    message of the :class:`~cam_core.metrics.faithfulness.FaithfulnessError` that refused its map
    (blank or non-finite). Every valid map of the call shares one set of perturbation batches.
    """
    out: list[dict[str, float] | str] = [""] * len(items)
    good: list[int] = []
    for n, it in enumerate(items):
        try:
            FM.check_faith_map(it.cam, f"{it.name} map for class {ex.card.classes[it.cls]}")
            good.append(n)
        except FM.FaithfulnessError as exc:
            out[n] = f"faithfulness: {exc}"
    if not good:
        return out
    chosen = [items[n] for n in good]
    x = preprocess(list(images), ex.card).to(ex.device)
    gens = [
        torch.Generator().manual_seed(stem_seed(stems[it.image], it.cls, it.name)) for it in chosen
    ]
    with ex.lock, guarded(ex.model):
        res = FM.score_faithfulness(
            _scorer(ex),
            x,
            [it.cam for it in chosen],
            [it.image for it in chosen],
            [it.cls for it in chosen],
            steps=steps,
            fill=fill,
            seeds=[stem_seed(s) for s in stems],
            generator=gens,
            batch_size=batch_size,
        )
    for t, n in enumerate(good):
        out[n] = res.row(t)
    return out


def faith_table(
    ex: Explainer,
    images: Sequence[np.ndarray],
    stems: Sequence[str],
    maps_by_layer: Mapping[str, Mapping[tuple[int, int, str], np.ndarray]],
    *,
    steps: int = 20,
    fill: str = "blur",
) -> dict[MapKey, dict[str, float] | str]:
    """:func:`faith_figures` of every map of a batch (``maps_by_layer[layer][(image, class,
    method)]``), keyed by (image, class, method, layer): all of them in one call.
    """
    keys: list[MapKey] = []
    items: list[FaithItem] = []
    for lay, maps in maps_by_layer.items():
        for (j, c, m), cam in maps.items():
            keys.append((j, c, m, lay))
            items.append(FaithItem(j, c, cam, f"{m}@{lay}"))
    if not items:
        return {}
    figs = faith_figures(ex, images, stems, items, steps=steps, fill=fill)
    return dict(zip(keys, figs, strict=True))


def apply_faith(row: dict[str, Any], figures: dict[str, float] | str | None) -> None:
    """Put one map's faithfulness figures into its row. A refused map (blank, non-finite) leaves
    them None and says why in ``faith_error``: the row keeps its localization figures, so ticking
    faithfulness never changes which rows the localization summary counts.
    """
    if figures is None:
        return
    if isinstance(figures, str):
        row["faith_error"] = figures
    else:
        row.update(figures)


def faith_curves(
    ex: Explainer,
    image: np.ndarray,
    cam: np.ndarray,
    cls: int,
    *,
    steps: int = 20,
    fill: str = "blur",
    seed: int = 0,
) -> FM.Curves:
    """Deletion / insertion curves of one map (class index ``cls``) beside the random order's.
    Raises :class:`~cam_core.metrics.faithfulness.FaithfulnessError` for a blank or non-finite
    map.
    """
    FM.check_faith_map(cam)
    x = preprocess([image], ex.card).to(ex.device)
    with ex.lock, guarded(ex.model):
        return FM.deletion_insertion(
            _scorer(ex), x, [cam], [0], [cls], steps=steps, fill=fill, seeds=seed
        )


def curves_figure(curves: FM.Curves, t: int = 0, *, title: str = "") -> go.Figure:
    """Map ``t``'s deletion and insertion curves (solid) beside the random order's (dotted):
    class probability against the fraction of pixels removed / inserted, AUCs in the legend.
    """
    x = curves.fractions.tolist()
    fig = go.Figure()
    for name, ys, auc, colour, dash in (
        ("deletion, map order", curves.deletion, curves.deletion_auc, "#d62728", "solid"),
        (
            "deletion, random order",
            curves.deletion_random,
            curves.deletion_auc_random,
            "#d62728",
            "dot",
        ),
        ("insertion, map order", curves.insertion, curves.insertion_auc, "#1f77b4", "solid"),
        (
            "insertion, random order",
            curves.insertion_random,
            curves.insertion_auc_random,
            "#1f77b4",
            "dot",
        ),
    ):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=ys[t].tolist(),
                mode="lines+markers",
                name=f"{name} (AUC {auc[t]:.3f})",
                line={"color": colour, "dash": dash},
                hovertemplate="%{x:.0%} of pixels: p = %{y:.3f}<extra></extra>",
            )
        )
    fig.update_layout(
        title=title or None,
        height=320,
        margin={"l": 4, "r": 4, "t": 36 if title else 8, "b": 4},
        xaxis={"title": "fraction of pixels removed / inserted", "tickformat": ".0%"},
        yaxis={"title": "class probability", "range": [0, 1.02]},
        legend={"orientation": "h", "y": -0.3},
    )
    return fig
