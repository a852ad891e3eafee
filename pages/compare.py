"""Compare: one image, every method × the chosen classes, each cell with its figures."""

import streamlit as st

from cam_core import render
from cam_core.methods import METHODS, get_method
from cam_core.metrics import map_figures
from pages import _picker, _state

opened = _picker.open_image_page(
    "Compare methods",
    "One image, many methods: which maps land on the boxes of each class?",
    "compare",
    allow_upload=False,
)
state, explainer, item = opened.state, opened.explainer, opened.item
card, probs, default = explainer.card, opened.probs, list(opened.default_classes)

fast = [m for m, spec in METHODS.items() if not spec.slow]
slow = [m for m, spec in METHODS.items() if spec.slow]
c1, c2 = st.columns([2, 1])
classes = c1.multiselect(
    "Classes (rows of the grid are methods, columns are classes)",
    card.classes,
    default=default,
    key=f"cmp_classes_{_state.short_key(state.model_id, item.key)}",
    help="Default: the predicted class(es) and every class with GT boxes.",
)
with_slow = c2.checkbox(
    f"Include slow methods ({', '.join(get_method(m).label for m in slow)})",
    value=_state.pref("compare_slow", False),
    key="compare_slow",
    on_change=_state.remember,
    args=("compare_slow", "compare_slow"),
    help="Many forward passes per map: seconds to minutes on a CPU.",
)
alpha = c2.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="cmp_opacity")
if not classes:
    st.info("Pick at least one class.")
    st.stop()

methods = fast + (slow if with_slow else [])
class_idx = [card.classes.index(c) for c in classes]
bar = st.progress(0.0, text="Computing maps…")


def _progress(done: int, total: int, method: str) -> None:
    label = get_method(method).label if method in METHODS else method
    bar.progress(done / max(total, 1), text=f"{label} ({done}/{total} methods)")


maps, errors = opened.maps(methods, class_idx, _progress)
bar.empty()

st.markdown(
    f"**{item.name}** ({item.source}) · layer `{state.layer}`"
    f"{' · flip-averaged' if state.flips else ''} · GT: "
    f"{', '.join(sorted({b.cls for b in item.boxes})) or 'none'}"
)
legend = render.legend_markdown(sorted({b.cls for b in item.boxes}))
if legend:
    st.markdown(f"GT colours: {legend} · white: boxes from the map", unsafe_allow_html=True)

grid = [1, *[2] * len(classes)] + ([7 - 2 * len(classes)] if len(classes) < 3 else [])
header = st.columns(grid)
header[0].markdown("**method**")
for col, cls in zip(header[1:], classes, strict=False):
    col.markdown(f"**{cls}** · p = {float(probs[card.classes.index(cls)]):.2f}")
table = []
for method in methods:
    label = get_method(method).label
    row = st.columns(grid, vertical_alignment="center")
    row[0].markdown(f"**{label}**")
    if method in errors:
        row[1].warning(errors[method])
        continue
    for col, ci in zip(row[1:], class_idx, strict=False):
        result = maps[(method, ci)]
        gt = item.sample.boxes_for(card.classes[ci])
        scored = map_figures(result.cam, gt)
        figures = render.scores_caption(scored.scores, result.blank)
        col.image(
            render.panel_image(
                item.image, result.cam, alpha=alpha, gt_boxes=gt, cam_boxes=scored.cam_boxes[:3]
            ),
            caption=f"{label} · {result.class_name} — {figures}",
            width=280,
            output_format="PNG",
        )
        table.append({"method": label, "class": result.class_name, **scored.scores})

if errors:
    st.caption(f"{len(errors)} method(s) do not apply to this model; see the notes in their rows.")
if table:
    st.markdown("#### Figures")
    st.dataframe(table, hide_index=True, width="stretch")
