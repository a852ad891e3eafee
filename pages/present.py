"""Demo mode: a chosen set of images shown one at a time, large, for a meeting room projector
(1280 x 720): the sidebar hidden, ← / → (or the buttons) step through the set."""

import streamlit as st

from cam_core import data
from cam_core.catalogue import BOX_THRESHOLDS, recommended_threshold
from cam_core.mapcache import cache_in
from cam_core.methods import METHODS
from cam_core.presentation import default_selection, make_slide
from cam_core.uploads import SYNTHETIC_SOURCE
from cam_core.vocabulary import method_name
from pages import _state
from pages._sidebar import app_state

PANEL_SHOWN = 500  # panel width on screen in CSS pixels (the page fits a 1280 x 720 projector)

# The room sees the slide, not the controls: no sidebar (nor its toggle), a slim header, little
# padding; everything below fits 1280 x 720.
st.html(
    "<style>[data-testid='stSidebar'],[data-testid='stSidebarCollapsedControl'],"
    "[data-testid='stExpandSidebarButton']{display:none !important;}"
    "[data-testid='stMainBlockContainer']{padding:0.6rem 1.5rem 0.5rem 1.5rem !important;"
    "max-width:100% !important;}"
    "[data-testid='stHeader']{display:none !important;}"
    ".present-head{font-size:1.7rem;font-weight:650;line-height:1.25;margin:0}"
    ".present-verdict{font-size:1.45rem;font-weight:600;line-height:1.3;margin:0}"
    ".present-on{color:#166534}.present-off{color:#b91c1c}.present-none{color:#92400e}"
    ".present-small{font-size:1.05rem;color:#475569;margin:0}</style>"
)

state = app_state()
explainer = _state.require_explainer(state)
if state.dataset is not None:
    samples, source = state.samples, "dataset"
else:
    samples, source = _state.demo_samples(), SYNTHETIC_SOURCE
by_stem = {s.stem: s for s in samples}
if not by_stem:
    st.warning("No images to present: choose a dataset folder or upload one on any page.")
    st.stop()

rec = explainer.card.recommendation
methods = list(METHODS)
default_method = rec.method if rec is not None and rec.method in METHODS else "gradcam"
chosen = [s for s in _state.pref("present_stems", []) if s in by_stem]
chosen = chosen or default_selection(samples)


def _step(delta: int) -> None:
    st.session_state["present_i"] = (st.session_state.get("present_i", 0) + delta) % len(chosen)


i = min(st.session_state.get("present_i", 0), len(chosen) - 1)
left, head, right = st.columns([1.5, 7, 1.5], vertical_alignment="center")
left.button(
    "Previous",
    icon=":material/arrow_back:",
    shortcut="left",
    on_click=_step,
    args=(-1,),
    width="stretch",
    help="← key",
)
right.button(
    "Next",
    icon=":material/arrow_forward:",
    shortcut="right",
    on_click=_step,
    args=(1,),
    width="stretch",
    help="→ key",
)
method = _state.pref("present_method", default_method)
try:
    with st.spinner(f"Drawing {chosen[i]} …"):  # the first slide loads the model: seconds
        item = _state.item_for(by_stem[chosen[i]], source)
        slide = make_slide(
            explainer,
            state.model_id,
            item,
            method,
            state.layer,
            cache_in(st.session_state),
            flip_smooth=state.flips,
            threshold=recommended_threshold(explainer.card, BOX_THRESHOLDS),
        )
except (data.DataError, ValueError, KeyError) as exc:
    st.error(f"{chosen[i]} cannot be shown: {exc}")
    st.stop()
head.html(f"<p class='present-head'>{i + 1} / {len(chosen)} · {slide.headline}</p>")
tone = {True: "present-on", False: "present-off", None: "present-none"}[slide.on_defect]
st.html(f"<p class='present-verdict {tone}'>{slide.verdict}</p>")
# Fixed-size panels: two of them, the words above and their captions fit 1280 x 720.
_, gt_col, map_col, _ = st.columns([1, 10, 10, 1], gap="medium")
gt_col.image(slide.gt, width=PANEL_SHOWN)
gt_col.html("<p class='present-small'>The image with its ground-truth boxes</p>")
map_col.image(slide.heat, width=PANEL_SHOWN)
map_col.html(f"<p class='present-small'>{slide.figures}</p>")
if slide.error:
    st.error(slide.error)

with st.expander("Set up the presentation", icon=":material/tune:"):
    st.multiselect(
        "Images to present, in order",
        list(by_stem),
        default=chosen,
        key="present_stems_input",
        on_change=_state.remember,
        args=("present_stems_input", "present_stems"),
    )
    st.selectbox(
        "Map",
        methods,
        index=_state.index_of(methods, method),
        format_func=method_name,
        key="present_method_input",
        on_change=_state.remember,
        args=("present_method_input", "present_method"),
    )
    st.caption(
        f"Model: {state.model_ref.label} · layer {state.layer} · flip averaging "
        f"{'on' if state.flips else 'off'} (the sidebar's; leave demo mode to change them)."
    )
    st.page_link("pages/explore.py", label="Leave demo mode (Explore)", icon=":material/logout:")
