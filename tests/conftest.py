"""Shared test setup."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _navigation_only_multipage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make AppTest treat the app as the ``st.navigation`` app it is: AppTest resets Streamlit's
    legacy ``pages/`` switch before every run (the workaround and why: pages/_legacy.py)."""
    from pages._legacy import apptest_uses_navigation_only

    apptest_uses_navigation_only(monkeypatch)
