"""Explore: one image, its GT boxes, and a heatmap per chosen class and method, side by side."""

from collections.abc import Callable
from dataclasses import replace

import streamlit as st

from cam_core import render, slides
from cam_core.catalogue import BOX_THRESHOLDS, recommended_threshold
from cam_core.evaluation.faith import curves_figure, faith_curves
from cam_core.explain import CamResult
from cam_core.figures import heatmap_figure, image_figure, probability_figure
from cam_core.methods import get_method
from cam_core.metrics import map_figures
from cam_core.metrics.faithfulness import FILLS, FaithfulnessError
from cam_core.vocabulary import method_name
from pages import _picker, _state

PANELS_PER_ROW = 3

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
        help=f"Default: {rule}, and every class with GT boxes. Each class gets its own row.",
    )
with chart:
    st.plotly_chart(
        probability_figure(card.classes, probs, highlight=classes),
        config={"displayModeBar": False},
        key="probs",
    )

methods = list(state.methods)
if not methods:
    st.info("Pick at least one CAM method in the sidebar.")
    st.stop()
if not classes:
    st.info("Pick at least one class to explain.")
    st.stop()
class_idx = [card.classes.index(c) for c in classes]


def _expected(method: str) -> str:
    seconds = opened.cache.estimate(state.model_id, method, state.flips)
    if seconds is not None:
        return f"about {seconds:.0f} s, as last time"
    return "up to a minute on a CPU" if get_method(method).slow else "a few seconds"


def _controls() -> tuple[float, str, float | str, bool, bool]:
    """Display controls: opacity, colormap, map → boxes threshold, GT boxes, shared scale."""
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
    default_threshold = recommended_threshold(card, BOX_THRESHOLDS)
    threshold = c3.selectbox(
        "Map → boxes threshold",
        BOX_THRESHOLDS,
        _state.index_of(BOX_THRESHOLDS, pref("box_threshold", default_threshold)),
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
    shared = c4.toggle(
        "Shared scale across classes",
        pref("shared_scale", False),
        key="shared_scale",
        on_change=keep,
        args=("shared_scale", "shared_scale"),
        help="Off: each map is scaled to its own peak, so a class the model hardly sees looks "
        "as hot as the predicted one. On: the classes of one method share the scale of the "
        "strongest.",
    )
    return alpha, colormap, threshold, show_gt, shared


@st.fragment
def panels(class_idx: list[int], methods: list[str]) -> None:
    """Display controls and the panels. Maps already computed are drawn at once; the missing
    ones (a method just added, a slow one) are computed one method at a time into their
    places. Moving a control reruns only this part and recomputes nothing.
    """
    alpha, colormap, threshold, show_gt, shared = _controls()
    legend = render.legend_markdown(gt_classes, map_boxes=True)
    st.markdown(f"Colours: {legend}", unsafe_allow_html=True)
    draw = _Drawer(alpha, colormap, threshold, show_gt, shared)

    missing = opened.missing(methods, class_idx)
    maps, errors = opened.maps([m for m in methods if m not in missing], class_idx)
    places: dict[tuple[str, int], object] = {}
    for ci in class_idx:
        cls, p = card.classes[ci], float(probs[ci])
        gt = item.sample.boxes_for(cls)
        low = render.probability_note(p)
        badge = f" :orange-badge[:material/warning: {low}]" if low else ""
        st.markdown(f"#### {cls} · p = {p:.2f} · {len(gt)} GT box(es){badge}")
        cells = [None, *[m for m in methods if m not in errors]]
        for row in range(0, len(cells), PANELS_PER_ROW):
            cols = st.columns(PANELS_PER_ROW)
            for col, method in zip(cols, cells[row : row + PANELS_PER_ROW], strict=False):
                with col:
                    if method is None:
                        _gt_panel(ci)
                    elif method in missing:
                        places[(method, ci)] = st.empty()
                        places[(method, ci)].info(
                            f"{method_name(method)}: waiting ({_expected(method)})",
                            icon=":material/hourglass_empty:",
                        )
                    else:
                        draw(maps, method, ci)
    for message in errors.values():
        st.error(message)

    for method in missing:
        for ci in class_idx:
            places[(method, ci)].info(
                f"Computing **{method_name(method)}** ({_expected(method)})…",
                icon=":material/hourglass_top:",
            )
        new, failed = opened.maps([method], class_idx)
        maps.update(new)
        for ci in class_idx:
            with places[(method, ci)].container():
                if method in failed:
                    st.error(failed[method])
                else:
                    draw(maps, method, ci)
    done = [m for m in methods if all((m, ci) in maps for ci in class_idx)]
    if done:
        _sheet_download(draw, maps, done, class_idx)


def _gt_panel(row: int) -> None:
    n = len(item.boxes)
    title = f"Ground truth · {n} box(es)" if item.has_annotation else "Image (no annotation)"
    st.plotly_chart(
        image_figure(item.image, item.boxes, title=title),
        config={"displayModeBar": False},
        key=f"gt_{row}",
    )
    st.caption(f"GT panel: {item.name} · {item.image.shape[1]}×{item.image.shape[0]} px")


class _Drawer:
    """Draws map panels (and builds their slides) with the display controls' settings."""

    def __init__(
        self, alpha: float, colormap: str, threshold: float | str, show_gt: bool, shared: bool
    ) -> None:
        self.alpha, self.colormap, self.threshold = alpha, colormap, threshold
        self.show_gt, self.shared = show_gt, shared
        scale = render.SHARED_SCALE_TITLE if shared else slides.OWN_SCALE_TITLE
        self.style = slides.SheetStyle(alpha=alpha, colormap=colormap, scale_title=scale)

    def gain(self, maps: dict[tuple[str, int], CamResult], method: str, ci: int) -> float | None:
        """The map's factor on the shared scale (None: its own scale)."""
        if not self.shared:
            return None
        keys = [k for k in maps if k[0] == method]
        gains = render.shared_gains([maps[k] for k in keys])
        return gains[keys.index((method, ci))]

    def tile(self, maps: dict[tuple[str, int], CamResult], method: str, ci: int) -> slides.Tile:
        """The slide tile of one map (title with image, class, p, method, layer; figures)."""
        result = maps[(method, ci)]
        gt = item.sample.boxes_for(result.class_name)
        scored = map_figures(result.cam, gt, threshold=self.threshold)
        return slides.map_tile(
            item.image,
            result,
            p=float(probs[ci]),
            image_name=item.sample.stem,
            caption=render.scores_caption(scored.scores, result.blank),
            gt_boxes=gt if self.show_gt else (),
            cam_boxes=scored.cam_boxes,
            cam_box_labels=scored.labels(),
            gain=self.gain(maps, method, ci),
        )

    def __call__(self, maps: dict[tuple[str, int], CamResult], method: str, ci: int) -> None:
        result = maps[(method, ci)]
        p = float(probs[ci])
        label = method_name(result.method)
        gt = item.sample.boxes_for(result.class_name)
        scored = map_figures(result.cam, gt, threshold=self.threshold)
        cam = render.shared_scale(result.cam, self.gain(maps, method, ci))
        st.plotly_chart(
            heatmap_figure(
                item.image,
                cam,
                alpha=self.alpha,
                colormap=self.colormap,
                title=f"{label} · {result.class_name} (p = {p:.2f})",
                gt_boxes=gt if self.show_gt else (),
                cam_boxes=scored.cam_boxes,
                cam_box_labels=scored.labels(),
                scale_title=render.SHARED_SCALE_TITLE if self.shared else "",
            ),
            config={"displayModeBar": False},
            key=f"map_{result.class_index}_{result.method}",
        )
        figures = render.scores_caption(scored.scores, result.blank)
        st.caption(f"{label} · {result.class_name} — {figures}")
        if note := render.probability_note(p):
            st.caption(f":orange[:material/warning: {note}: the model hardly sees this class]")
        _faith_expander(result)
        name = f"{item.sample.stem}_{result.class_name}_{result.method}_{result.layer}"
        tile = self.tile(maps, method, ci)
        d1, d2 = st.columns(2)
        d1.download_button(
            "Slide PNG",
            _png(lambda: slides.panel_slide(tile, style=replace(self.style, tile_px=880))),
            f"{name}.png",
            "image/png",
            on_click="ignore",
            icon=":material/download:",
            key=f"png_{name}",
            help="880 px wide: title (image, class, p, method, layer), boxes, figures and the "
            "colour bar.",
        )
        d2.download_button(
            "map .npy",
            lambda cam=result.cam: render.npy_bytes(cam),
            f"{name}.npy",
            "application/octet-stream",
            on_click="ignore",
            icon=":material/download:",
            key=f"npy_{name}",
        )


def _faith_expander(result: CamResult) -> None:
    """On demand: does the model's score follow this map? Deletion / insertion curves, map order
    against a random order (cam_core.evaluation.faith)."""
    with st.expander("Deletion / insertion curves"):
        st.caption(
            "Pixels removed from (deletion) or put back into (insertion) the image, most "
            "relevant first, in 20 steps. A faithful map drops the probability faster than a "
            "random order (lower deletion AUC) and brings it back faster (higher insertion AUC)."
        )
        key = (
            f"faith_{state.model_id}_{item.key}_{result.method}_{result.layer}_{result.class_index}"
        )
        fill = st.radio(
            "Removed pixels become",
            FILLS,
            horizontal=True,
            key=f"{key}_fill",
            format_func=lambda f: {"blur": "a blurred copy", "mean": "the mean value"}[f],
        )
        store = f"{key}_{fill}_{state.flips}"
        slot = st.empty()
        if store not in st.session_state and slot.button("Compute the curves", key=f"{key}_go"):
            slot.empty()
            try:
                st.session_state[store] = faith_curves(
                    explainer, item.image, result.cam, result.class_index, fill=fill
                )
            except FaithfulnessError as exc:
                st.session_state[store] = str(exc)
        curves = st.session_state.get(store)
        if isinstance(curves, str):
            st.warning(f"Not computed: {curves}")
        elif curves is not None:
            st.plotly_chart(
                curves_figure(curves), config={"displayModeBar": False}, key=f"{store}_chart"
            )
            if curves.is_flat():
                st.info(
                    "The map's order and a random order give nearly the same curves: the "
                    "filled-in image still carries the class (a blurred texture keeps its "
                    "defect). Try **the mean value**.",
                    icon=":material/info:",
                )


def _png(make: Callable[[], object]) -> Callable[[], bytes]:
    """A download's data, made only when the button is pressed."""
    return lambda: render.png_bytes(make())  # type: ignore[arg-type]


def _sheet_download(
    draw: _Drawer, maps: dict[tuple[str, int], CamResult], methods: list[str], class_idx: list[int]
) -> None:
    """One click: the image's GT and every drawn map as one slide-ready sheet."""

    def make() -> object:
        rows = [
            [
                slides.gt_tile(item.image, item.boxes, title=f"{item.sample.stem} · ground truth"),
                *[draw.tile(maps, m, ci) for m in methods],
            ]
            for ci in class_idx
        ]
        title = f"{item.name} · {card.name} · layer {state.layer}"
        return slides.sheet(rows, title=title, style=draw.style)

    st.download_button(
        "Sheet PNG: GT + all maps",
        _png(make),
        f"{item.sample.stem}_sheet.png",
        "image/png",
        on_click="ignore",
        icon=":material/photo_library:",
        key="sheet_png",
        help="The image's GT beside every map drawn above (one row per class), figures under "
        "each, one colour bar.",
    )


panels(class_idx, methods)
