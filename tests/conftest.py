"""Shared test setup."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _navigation_only_multipage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make AppTest treat the app as the ``st.navigation`` app it is.

    Streamlit keeps a legacy switch: a ``pages/`` folder beside the entry script turns on the
    v1 multipage mode until the first ``st.navigation`` call turns it off for the process. The
    real server flips it once, on the first run; AppTest resets it before *every* run, so from
    the second run on it would route straight to the page script and skip ``app.py``'s sidebar.
    Forcing the switch off after each reset gives AppTest the server's steady state.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # streamlit not installed: nothing to patch
        return
    original = PagesManager.__init__

    def init(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)
