"""The classroom control token: anyone may watch, only the holder of the token may act.

When a token is set (EFFLAB_CONTROL_TOKEN, or `control_token` in .streamlit/secrets.toml),
starting, stopping, resuming, evaluating and deleting runs need it, entered once per browser
session in the sidebar; viewing never does. So students can follow the projected run on their own
laptops without being able to stop it. With no token set, everything works as before.

Pages disable their action buttons with `can_control()` and check it again inside the action
itself: a disabled button is only a hint to the browser, not a guarantee.
"""

from __future__ import annotations

import hmac
import os

import streamlit as st

TOKEN_ENV = "EFFLAB_CONTROL_TOKEN"
SECRET_KEY = "control_token"
INPUT_KEY = "control_token_input"
# Streamlit forgets a widget's value on pages that do not draw it; the entered token lives here.
ENTERED_KEY = "control_token_entered"
LOCKED_HELP = "Viewing only: enter the control token in the sidebar to start, stop, resume or delete runs."


class _Unreadable(str):
    """A secrets file that exists but cannot be parsed: controls stay locked (fail closed)."""


def configured_token() -> str | None:
    """The token from the environment, else from st.secrets; None when none is set."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    try:
        value = st.secrets.get(SECRET_KEY)
    except FileNotFoundError as exc:   # StreamlitSecretNotFoundError: no file, or one it cannot parse
        if "error" in getattr(exc, "exec_kwargs", {}):
            return _Unreadable(str(exc))
        return None
    if value is None:
        return None
    return str(value).strip() or None


def is_control_locked() -> bool:
    """Whether a token is set at all (then actions need it)."""
    return configured_token() is not None


def can_control() -> bool:
    """True when no token is set, or this session entered the right one."""
    token = configured_token()
    if token is None:
        return True
    if isinstance(token, _Unreadable):
        return False
    entered = str(st.session_state.get(ENTERED_KEY) or "")
    # Constant-time comparison: the time taken reveals nothing about how much of a guess was right.
    return hmac.compare_digest(entered.encode("utf-8"), token.encode("utf-8"))


def _remember() -> None:
    st.session_state[ENTERED_KEY] = st.session_state.get(INPUT_KEY, "")


def token_widget() -> bool:
    """The sidebar field for the token (only when one is set); returns can_control()."""
    token = configured_token()
    if token is None:
        return True
    with st.sidebar:
        if isinstance(token, _Unreadable):
            st.error(f":material/lock: Controls are locked: the secrets file could not be read ({token}). "
                     f"Fix it, or set {TOKEN_ENV}, and restart the dashboard.")
            return False
        if INPUT_KEY not in st.session_state:
            st.session_state[INPUT_KEY] = st.session_state.get(ENTERED_KEY, "")
        st.text_input("Control token", type="password", key=INPUT_KEY, on_change=_remember,
                      help="Set by whoever runs this dashboard. Without it you can watch every run but "
                           "not start, stop, resume or delete one.")
        allowed = can_control()
        if allowed:
            st.caption(":material/lock_open: Controls unlocked for this browser session.")
        elif st.session_state.get(ENTERED_KEY):
            st.warning(":material/lock: That is not the control token.")
        else:
            st.caption(f":material/lock: {LOCKED_HELP}")
    return allowed
