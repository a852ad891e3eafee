"""Explore: one image, its GT boxes, and a heatmap per chosen class and method, side by side."""

import numpy as np
import streamlit as st

from cam_core import render
from cam_core.catalogue import recommended_threshold
from cam_core.explain import CamResult
from cam_core.figures import heatmap_figure, image_figure, probability_figure
from cam_core.methods import get_method
from cam_core.metrics import map_figures
from cam_core.models import ModelCard
from cam_core.uploads import ImageItem
from cam_core.vocabulary import method_name
from pages import _picker, _state

PANELS_PER_ROW = 3
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, "otsu")

opened = _picker.open_image_page(
    "Explore",
    "Where does the model look for each defect class, and does it land on the boxes?",
    "explore",
    allow_upload=True,
)
state, explainer, item = opened.state, opened.explainer, opened.item
card, probs, default = explainer.card, opened.probs, list(opened.default_classes)
gt_classes = sorted({b.cls for b in item.boxes})

info, chart = st.columns([3, 2], vertical_alignment="top")
with info:
    st.subheader(item.name)
    tags = [f":gray-badge[{item.source}]"]
    tags.append(
        f":blue-badge[predicted: {card.classes[int(probs.argmax())]} {float(probs.max()):.2f}]"
    )
    if item.has_annotation:
        tags.append(f":green-badge[GT: {', '.join(gt_classes) or 'no boxes'}]")
    else:
        tags.append(":orange-badge[no annotation: localization not scored]")
    st.markdown(" ".join(tags))
    for note in item.warnings:
        st.caption(f":material/warning: {note}")
    rule = "every class with p ≥ 0.5" if card.multilabel else "the predicted class"
    classes_key = _state.classes_pref(state.model_id, item.key)
    classes = st.multiselect(
        "Classes to explain",
        card.classes,
        default=[c for c in _state.pref(classes_key, default) if c in card.classes],
        key=classes_key,
        on_change=_state.remember,
        args=(classes_key, classes_key),
        help=f"Default: {rule}. Each class gets its own row of heatmaps.",
    )
with chart:
    st.plotly_chart(
        probability_figure(card.classes, probs, highlight=classes),
        config={"displayModeBar": False},
        key="probs",
    )

methods = state.methods
if not methods:
    st.info("Pick at least one CAM method in the sidebar.")
    st.stop()
if not classes:
    st.info("Pick at least one class to explain.")
    st.stop()

class_idx = [card.classes.index(c) for c in classes]
slow = [m for m in methods if get_method(m).slow]
bar = st.progress(0.0, text="Computing maps…") if slow else None


def _progress(done: int, total: int, method: str) -> None:
    if bar is not None:
        bar.progress(done / max(total, 1), text=f"{method} ({done}/{total})")


with st.spinner("Computing maps…"):
    maps, errors = opened.maps(methods, class_idx, _progress)
if bar is not None:
    bar.empty()
for message in errors.values():
    st.error(message)


@st.fragment
def panels(
    item: ImageItem,
    maps: dict[tuple[str, int], CamResult],
    probs: np.ndarray,
    class_idx: list[int],
    methods: list[str],
    card: ModelCard,
) -> None:
    """Display controls and the panels; moving a control reruns only this part (no map is
    recomputed: the maps are passed in).
    """
    c1, c2, c3, c4 = st.columns(4)
    pref, keep = _state.pref, _state.remember
    alpha = c1.slider(
        "Heatmap opacity",
        0.0,
        1.0,
        pref("opacity", 0.5),
        0.05,
        key="opacity",
        on_change=keep,
        args=("opacity", "opacity"),
    )
    maps_ = list(render.COLORMAPS)
    colormap = c2.selectbox(
        "Colormap",
        maps_,
        _state.index_of(maps_, pref("colormap", "jet")),
        key="colormap",
        on_change=keep,
        args=("colormap", "colormap"),
    )
    threshold = c3.selectbox(
        "Map → boxes threshold",
        THRESHOLDS,
        _state.index_of(THRESHOLDS, pref("box_threshold", recommended_threshold(card, THRESHOLDS))),
        key="box_threshold",
        on_change=keep,
        args=("box_threshold", "box_threshold"),
        help="Fraction of the map's peak (or Otsu) above which regions become boxes; also the "
        "level for pixel IoU.",
    )
    show_gt = c4.toggle(
        "GT boxes on heatmaps",
        pref("gt_on_heatmap", True),
        key="gt_on_heatmap",
        on_change=keep,
        args=("gt_on_heatmap", "gt_on_heatmap"),
    )
    legend = render.legend_markdown(sorted({b.cls for b in item.boxes}))
    if legend:
        st.markdown(f"GT colours: {legend} · white: boxes from the map", unsafe_allow_html=True)

    for ci in class_idx:
        cls = card.classes[ci]
        gt = item.sample.boxes_for(cls)
        st.markdown(f"#### {cls} · p = {float(probs[ci]):.2f} · {len(gt)} GT box(es)")
        cells = [None, *[m for m in methods if (m, ci) in maps]]
        for row in range(0, len(cells), PANELS_PER_ROW):
            cols = st.columns(PANELS_PER_ROW)
            for col, method in zip(cols, cells[row : row + PANELS_PER_ROW], strict=False):
                with col:
                    if method is None:
                        _gt_panel(item, ci)
                    else:
                        p = float(probs[ci])
                        _map_panel(
                            item, maps[(method, ci)], p, gt, alpha, colormap, threshold, show_gt
                        )


def _gt_panel(item: ImageItem, row: int) -> None:
    n = len(item.boxes)
    title = f"Ground truth · {n} box(es)" if item.has_annotation else "Image (no annotation)"
    st.plotly_chart(
        image_figure(item.image, item.boxes, title=title),
        config={"displayModeBar": False},
        key=f"gt_{row}",
    )
    st.caption(f"GT panel: {item.name} · {item.image.shape[1]}×{item.image.shape[0]} px")


def _map_panel(
    item: ImageItem,
    result: CamResult,
    p: float,
    gt: tuple,
    alpha: float,
    colormap: str,
    threshold: float | str,
    show_gt: bool,
) -> None:
    label = method_name(result.method)
    scored = map_figures(result.cam, gt, threshold=threshold)
    title = f"{label} · {result.class_name} (p = {p:.2f})"
    st.plotly_chart(
        heatmap_figure(
            item.image,
            result.cam,
            alpha=alpha,
            colormap=colormap,
            title=title,
            gt_boxes=gt if show_gt else (),
            cam_boxes=scored.cam_boxes,
            cam_box_labels=scored.labels(),
        ),
        config={"displayModeBar": False},
        key=f"map_{result.class_index}_{result.method}",
    )
    figures = render.scores_caption(scored.scores, result.blank)
    st.caption(f"{label} · {result.class_name} — {figures}")
    name = f"{item.sample.stem}_{result.class_name}_{result.method}_{result.layer}"
    png = render.png_bytes(
        render.panel_image(
            item.image,
            result.cam,
            alpha=alpha,
            colormap=colormap,
            gt_boxes=gt if show_gt else (),
            cam_boxes=scored.cam_boxes,
            cam_box_labels=scored.labels(),
        )
    )
    d1, d2 = st.columns(2)
    d1.download_button(
        "PNG",
        png,
        f"{name}.png",
        "image/png",
        on_click="ignore",
        icon=":material/download:",
        key=f"png_{name}",
    )
    d2.download_button(
        "map .npy",
        render.npy_bytes(result.cam),
        f"{name}.npy",
        "application/octet-stream",
        on_click="ignore",
        icon=":material/download:",
        key=f"npy_{name}",
    )


panels(item, maps, probs, class_idx, methods, card)
