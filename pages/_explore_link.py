"""Open one (image, class, method) of an evaluation on the Explore page: the callback a button
calls, and the switch the next page run makes. Shared by Evaluate's worst cases and Review's
galleries (one mechanism: ``picked_sample`` + ``goto_explore`` in the session state)."""

from __future__ import annotations

import streamlit as st

from cam_core.data import Sample
from cam_core.uploads import file_key
from pages import _picker, _state


def open_in_explore(
    state: _state.AppState, sample: Sample, cls: str, method: str, where: str
) -> None:
    """Button callback: Explore shows ``sample`` (image source "picked", captioned ``where``)
    explained for ``cls``, with ``method`` added to the sidebar's methods when missing."""
    st.session_state["picked_sample"] = (sample, where)
    _state.set_pref("img_source", _picker.SOURCE_PICKED)
    _state.set_pref(_state.classes_pref(state.model_id, file_key(sample)), [cls])
    if method not in state.methods:  # the sidebar applies it (pending_methods)
        st.session_state["pending_methods"] = [*state.methods, method]
    st.session_state["goto_explore"] = True


def follow() -> None:
    """Switch to Explore when a button asked for it in the previous run (call near the top)."""
    if st.session_state.pop("goto_explore", False):
        st.switch_page("pages/explore.py")
