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
_sidebar.sidebar()

navigation = st.navigation(
    [
        st.Page("pages/explore.py", title="Explore", icon=":material/search:", default=True),
        st.Page("pages/compare.py", title="Compare", icon=":material/grid_view:"),
        st.Page("pages/evaluate.py", title="Evaluate", icon=":material/monitoring:"),
        st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
    ]
)
navigation.run()
