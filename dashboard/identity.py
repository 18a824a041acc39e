"""Who this browser is: a random key kept in a cookie, so the runs it started stay its own across a
page reload, a new tab and a server restart (core/store/ownership.py says what owning a run allows).

Streamlit reads cookies (st.context.cookies, sent when the browser connects) but has no call to
write one, so a first visit gets a new key and a one-line script that stores it in the browser; the
next connection sends it back. The database keeps only the key's hash. A student who clears their
cookies, or opens the lab in another browser, is someone new: their earlier runs are then the
teacher's to change (or theirs again from the command line).
"""

from __future__ import annotations

import re
import secrets

import streamlit as st

from core.store.ownership import owner_of_key

COOKIE = "efflab_owner"
SESSION_KEY = "owner_key"
COOKIE_MAX_AGE_SECONDS = 400 * 24 * 3600     # browsers cap cookie lifetimes at 400 days
_KEY_PATTERN = re.compile(r"[0-9a-f]{32}")


def _sent_cookie() -> str | None:
    """The key the browser sent when it connected, if it is one of ours."""
    try:
        value = st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 - no browser behind this session (AppTest): no cookie
        return None
    return value if isinstance(value, str) and _KEY_PATTERN.fullmatch(value) else None


def browser_key() -> str:
    """This browser's key: the one its cookie holds, else a new one for this session."""
    key = st.session_state.get(SESSION_KEY)
    if not isinstance(key, str) or not _KEY_PATTERN.fullmatch(key):
        key = _sent_cookie() or secrets.token_hex(16)
        st.session_state[SESSION_KEY] = key
    return key


def me() -> str:
    """Who this browser is, as runs record their owner."""
    return owner_of_key(browser_key())


def keep_in_browser() -> None:
    """Stores this browser's key in its cookie when the browser did not send it (every run of the
    page until the browser reconnects with it; the script is idempotent and draws nothing)."""
    key = browser_key()
    if _sent_cookie() == key:
        return
    st.sidebar.html(f"<script>document.cookie = '{COOKIE}={key}; path=/; max-age={COOKIE_MAX_AGE_SECONDS}; "
                    "SameSite=Strict';</script>", unsafe_allow_javascript=True)
