"""The one workaround for Streamlit's legacy ``pages/`` auto-discovery (streamlit 1.67).

Streamlit keeps a v1 multipage switch, ``PagesManager.uses_pages_directory``: a ``pages/`` folder
beside the entry script turns it on until the first ``st.navigation`` call turns it off for the
process. While it is on, a run lists every ``pages/*.py`` file as a page (helpers such as
``_state.py`` included) and runs a page script without ``app.py`` (no sidebar, no menu). The
product's layout names the folder ``pages/``, so:

- a fresh server's very first run takes the legacy route; ``.streamlit/config.toml`` sets
  ``client.showSidebarNavigation = false`` (public option) so its file menu is never shown, and
  :func:`leave_legacy_mode` (called first by ``app.py``) turns the switch off, shows the real
  menu again and reruns; every later run takes ``app.py``'s own ``st.navigation``, which lists
  the four pages only (files starting with ``_`` are never pages);
- ``streamlit.testing`` (AppTest) resets the switch before *every* run, so
  :func:`apptest_uses_navigation_only` (tests/conftest.py) gives it the server's steady state.

Streamlit 1.67 has no public way to turn the legacy mode off (``st.navigation`` does it only after
the legacy run has started), so both read or set the private class attribute; delete this module
once the folder can be renamed or Streamlit drops the v1 mode.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager


def leave_legacy_mode() -> None:
    """On a run that took the legacy ``pages/`` route, switch to ``st.navigation`` and rerun;
    otherwise do nothing. Call it first in the entry script."""
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.set_option("client.showSidebarNavigation", True)
        st.rerun()


def apptest_uses_navigation_only(monkeypatch: Any) -> None:
    """Make every AppTest run see the switch off, as a server does after its first run
    (``monkeypatch`` is pytest's; undone at the end of the test)."""
    original = PagesManager.__init__

    def init(self: PagesManager, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)
