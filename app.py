"""Streamlit entry point: page config, the shared sidebar, and navigation. Run `make run`."""

import streamlit as st

from pages import _legacy, _sidebar

_legacy.leave_legacy_mode()  # a fresh server's first run only (see pages/_legacy.py)

st.set_page_config(
    page_title="Where is the defect model looking?",
    page_icon=":material/center_focus_strong:",
    layout="wide",
    initial_sidebar_state="expanded",
)
# Streamlit's own Stop (top right, beside the running icon) ends a script without a rerun, so a
# page stopped by it is never redrawn: Evaluate froze on "Running — 8 of 222 images …" with no
# partial result and no Resume. The pages' own Stop buttons rerun and keep what was done, so
# that one is hidden (data-testids of the Streamlit 1.67 frontend: the status widget's
# header button; the running icon stays).
st.html(
    "<style>[data-testid='stStatusWidget'] [data-testid='stBaseButton-header']"
    "{display: none !important;}</style>"
)
_sidebar.sidebar()

navigation = st.navigation(
    [
        st.Page("pages/explore.py", title="Explore", icon=":material/search:", default=True),
        st.Page("pages/compare.py", title="Compare", icon=":material/grid_view:"),
        st.Page("pages/evaluate.py", title="Evaluate", icon=":material/monitoring:"),
        st.Page("pages/review.py", title="Review", icon=":material/fact_check:"),
        st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
        st.Page("pages/present.py", title="Present", icon=":material/slideshow:"),
    ]
)
navigation.run()
