"""Streamlit entry point: page config, the shared sidebar, and navigation. Run `make run`."""

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from pages import _shared

if PagesManager.uses_pages_directory:
    # A fresh server's very first run takes Streamlit's legacy pages/-folder route, whose menu
    # lists the files ("app", "shared", …); .streamlit/config.toml hides that menu. Leave the
    # legacy mode at once and show the real menu from the next run on.
    PagesManager.uses_pages_directory = False
    st.set_option("client.showSidebarNavigation", True)
    st.rerun()

st.set_page_config(
    page_title="Where is the defect model looking?",
    page_icon=":material/center_focus_strong:",
    layout="wide",
    initial_sidebar_state="expanded",
)
_shared.sidebar()

navigation = st.navigation(
    [
        st.Page("pages/explore.py", title="Explore", icon=":material/search:", default=True),
        st.Page("pages/compare.py", title="Compare", icon=":material/grid_view:"),
        st.Page("pages/evaluate.py", title="Evaluate", icon=":material/monitoring:"),
        st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
    ]
)
navigation.run()
