"""Compare: one image, many methods × the chosen classes, each cell with its figures; the best
method per class marked, identical or sign-inverted maps flagged, one shared colour bar."""

import pandas as pd
import streamlit as st

from cam_core import render, slides
from cam_core.agreement import best_methods, ranking_text, related_maps
from cam_core.catalogue import BOX_THRESHOLDS, recommended_threshold
from cam_core.methods import METHODS, get_method
from cam_core.metrics import map_figures
from cam_core.vocabulary import method_name, metric_heading
from pages import _picker, _state

SIDEBAR, FAST, ALL = "Sidebar's methods", "All fast methods", "All methods"
TILES_PER_ROW = 5

opened = _picker.open_image_page(
    "Compare methods",
    "One image, many methods: which maps land on the boxes of each class?",
    "compare",
    allow_upload=False,
)
state, explainer, item = opened.state, opened.explainer, opened.item
card, probs, default = explainer.card, opened.probs, list(opened.default_classes)
# Explore's map → boxes threshold (its pref, else the card's recommendation), so one image,
# method and class give the same figures on both pages.
threshold = BOX_THRESHOLDS[
    _state.index_of(
        BOX_THRESHOLDS, _state.pref("box_threshold", recommended_threshold(card, BOX_THRESHOLDS))
    )
]

c1, c2, c3 = st.columns([2, 2, 1])
classes = c1.multiselect(
    "Classes (one tile each in every block)",
    card.classes,
    default=default,
    key=f"cmp_classes_{_state.short_key(state.model_id, item.key)}",
    help="Default: the predicted class(es) and every class with GT boxes.",
)
presets = [SIDEBAR, FAST, ALL]
preset = c2.segmented_control(
    "Methods",
    presets,
    default=_state.pref("compare_methods", SIDEBAR),
    key="compare_methods",
    on_change=_state.remember,
    args=("compare_methods", "compare_methods"),
    help="The sidebar's choice, every fast method, or every method (slow ones take seconds to "
    "minutes each on a CPU).",
)
alpha = c3.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="cmp_opacity")
fast = [m for m, spec in METHODS.items() if not spec.slow]
methods = {SIDEBAR: list(state.methods), FAST: fast, ALL: list(METHODS)}[preset or SIDEBAR]
slow = [m for m in methods if get_method(m).slow]


def _expected(method: str) -> str:
    seconds = opened.cache.estimate(state.model_id, method, state.flips)
    if seconds is not None:
        return f"about {seconds:.0f} s, as last time"
    return "up to a minute on a CPU"


if slow:
    st.caption(
        ":material/hourglass_top: Slow methods in this set: "
        + ", ".join(f"{method_name(m)} ({_expected(m)})" for m in slow)
        + "."
    )
if not classes or not methods:
    st.info("Pick at least one class, and a method in the sidebar or a preset above.")
    st.stop()

class_idx = [card.classes.index(c) for c in classes]
bar = st.progress(0.0, text="Computing maps…")


def _progress(done: int, total: int, method: str) -> None:
    text = "done" if method == "done" else f"Computing {method_name(method)}"
    bar.progress(done / max(total, 1), text=f"{text} ({done} of {total} methods)")


maps, errors = opened.maps(methods, class_idx, _progress)
bar.empty()
methods = [m for m in methods if m not in errors]

gt_names = sorted({b.cls for b in item.boxes})
st.markdown(
    f"**{item.name}** ({item.source}) · layer `{state.layer}`"
    f"{' · flip-averaged' if state.flips else ''} · map → boxes threshold {threshold} "
    f"(Explore's) · GT: {', '.join(gt_names) or 'none'}"
)
legend = render.legend_markdown(gt_names, map_boxes=True)
st.markdown(f"Colours: {legend}", unsafe_allow_html=True)
st.image(slides.colour_bar("jet", 360), caption=f"0 → 1: {slides.OWN_SCALE_TITLE}", width=360)

scored = {
    (m, ci): map_figures(
        maps[(m, ci)].cam, item.sample.boxes_for(card.classes[ci]), threshold=threshold
    )
    for m in methods
    for ci in class_idx
}
best = {ci: best_methods({m: scored[(m, ci)].scores for m in methods}) for ci in class_idx}

heads = []
for ci in class_idx:
    p = float(probs[ci])
    low = render.probability_note(p)
    heads.append(f"**{card.classes[ci]}** (p = {p:.2f}" + (f", :orange[{low}])" if low else ")"))
st.markdown("Each block: " + " · ".join(heads))


def _gt_tile(ci: int) -> None:
    gt = item.sample.boxes_for(card.classes[ci])
    st.image(
        render.draw_boxes(render.to_rgb(item.image), gt),
        caption=f"raw image · {len(gt)} {card.classes[ci]} GT box(es)",
        width="stretch",
    )


table = []


def _star(method: str, ci: int) -> str:
    """ " · ★ best" for the best method(s) of class ``ci``, unless every method ties."""
    return " · ★ best" if method in best[ci] and len(best[ci]) < len(methods) else ""


def _map_tile(method: str, ci: int) -> None:
    label = method_name(method)
    result, figs = maps[(method, ci)], scored[(method, ci)]
    gt = item.sample.boxes_for(card.classes[ci])
    star = _star(method, ci)
    st.image(
        render.panel_image(
            item.image, result.cam, alpha=alpha, gt_boxes=gt, cam_boxes=figs.cam_boxes[:3]
        ),
        caption=f"{label} · {result.class_name} — "
        f"{render.scores_caption(figs.scores, result.blank)}{star}",
        width="stretch",
        output_format="PNG",
    )
    table.append({"method": label, "class": result.class_name, **figs.scores})


# Dense: blocks of one tile per class (the raw image with GT first, then one per method),
# as many blocks side by side as fit TILES_PER_ROW tiles.
blocks: list[str | None] = [None, *methods]
per_row = max(1, TILES_PER_ROW // len(class_idx))
for start in range(0, len(blocks), per_row):
    cols = st.columns(per_row * len(class_idx))
    for b, method in enumerate(blocks[start : start + per_row]):
        for j, ci in enumerate(class_idx):
            with cols[b * len(class_idx) + j]:
                label = "Image · GT" if method is None else method_name(method)
                st.markdown(f"**{label}**" if j == 0 else "&nbsp;")
                if method is None:
                    _gt_tile(ci)
                else:
                    _map_tile(method, ci)

for message in errors.values():
    st.warning(message)

notes = []
for ci in class_idx:
    for relation in related_maps({m: maps[(m, ci)].cam for m in methods}):
        notes.append(f"{card.classes[ci]}: {relation.describe()}")
    if best[ci] and len(best[ci]) < len(methods):
        names = ", ".join(method_name(m) for m in best[ci])
        notes.insert(0, f"★ Best on {card.classes[ci]}: {names} (ranked by {ranking_text()})")
for note in notes:
    st.caption(note)


def _grid_png() -> bytes:
    rows = [
        [slides.gt_tile(item.image, item.boxes, title=f"{item.sample.stem} · ground truth")],
        *[
            [
                slides.map_tile(
                    item.image,
                    maps[(m, ci)],
                    p=float(probs[ci]),
                    image_name=item.sample.stem,
                    caption=render.scores_caption(scored[(m, ci)].scores, maps[(m, ci)].blank)
                    + _star(m, ci),
                    gt_boxes=item.sample.boxes_for(card.classes[ci]),
                    cam_boxes=scored[(m, ci)].cam_boxes[:3],
                )
                for ci in class_idx
            ]
            for m in methods
        ],
    ]
    style = slides.SheetStyle(alpha=alpha, tile_px=260)
    title = f"{item.name} · {card.name} · layer {state.layer}: methods compared"
    return render.png_bytes(slides.sheet(rows, title=title, style=style))


if methods:
    st.download_button(
        "Grid PNG",
        _grid_png,
        f"{item.sample.stem}_compare.png",
        "image/png",
        on_click="ignore",
        icon=":material/download:",
        help="The grid above as one slide-ready picture with its colour bar.",
    )
if table:
    st.markdown("#### Figures")
    st.dataframe(
        pd.DataFrame(table).rename(columns=metric_heading), hide_index=True, width="stretch"
    )
