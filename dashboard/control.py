"""Who may do what in the dashboard: anyone may watch and start runs; a run is changed only by
whoever started it, or by the teacher.

A run belongs to the browser that started it (dashboard/identity.py keeps a key in a cookie, so the
right survives a reload and a server restart; core/store/ownership.py holds the rule). The teacher is
whoever entered the control token (EFFLAB_CONTROL_TOKEN, or `control_token` in
.streamlit/secrets.toml) in the sidebar, once per browser session: they may stop, resume, cancel,
evaluate and delete every run, queue past one person's limit, and use weights files on the server.
So students follow the projected run on their own laptops and train their own, without being able
to stop anyone else's. With no token set there is no teacher: runs nobody owns (from the command
line, or imported) are then anyone's.

Pages disable their action buttons with `may_act()` and check it again inside the action itself: a
disabled button is only a hint to the browser, not a guarantee.

Guesses are rate-limited, per browser session and per server (a new session per guess gets
around the first, not the second): after a few free wrong guesses each further one makes the
next wait twice as long, up to a cap, and the sidebar says how long. During the wait no guess is
compared at all, the right token included, or the limit would tell a guesser nothing new. The
comparison itself stays constant-time.
"""

from __future__ import annotations

import hmac
import math
import os
import threading
import time
from dataclasses import dataclass

import streamlit as st

from core.store import ownership
from dashboard import identity

TOKEN_ENV = "EFFLAB_CONTROL_TOKEN"
SECRET_KEY = "control_token"
INPUT_KEY = "control_token_input"
# Streamlit forgets a widget's value on pages that do not draw it; the entered token lives here.
ENTERED_KEY = "control_token_entered"
# Every refusal ends with what to do next, in one sentence (issue 32).
LOCKED_HELP = ("Only whoever started this run, or the teacher (control token in the sidebar), may stop, resume, "
               "cancel, evaluate or delete it; anyone may watch it. Ask them, or start a run of your own.")
UNREADABLE_HELP = ("Controls are locked: the secrets file could not be read. Ask the teacher to fix it and "
                   "restart the dashboard.")
SERVER_PATHS_HELP = ("Only the teacher (control token in the sidebar) may train from a weights file on the server; "
                     "choose ImageNet or random weights.")
BACKOFF_KEY = "control_token_backoff"          # this session's Backoff
REFUSED_KEY = "control_token_refused_until"    # when this session may guess again (for the message)
SESSION_FREE_GUESSES = 3                       # wrong guesses before a session has to wait
SERVER_FREE_GUESSES = 10                       # wrong guesses, all sessions together, before everyone waits
FIRST_WAIT_S = 2.0                             # then 2, 4, 8 ... seconds
SESSION_MAX_WAIT_S = 300.0
SERVER_MAX_WAIT_S = 60.0                       # the teacher shares this wait: keep it short
FORGET_AFTER_S = 900.0                         # a quiet quarter of an hour clears the server's count
clock = time.monotonic                         # the backoff's clock (tests move it)


@dataclass
class Backoff:
    """Exponential back-off after `free` failures: failure free+k blocks for FIRST_WAIT_S·2^(k-1) s."""

    free: int
    max_wait: float
    failures: int = 0
    blocked_until: float = 0.0
    last_failure: float = -math.inf

    def wait(self, now: float) -> float:
        """Seconds until the next guess is compared (0: now)."""
        if now - self.last_failure > FORGET_AFTER_S:
            self.failures, self.blocked_until = 0, 0.0
        return max(0.0, self.blocked_until - now)

    def failed(self, now: float) -> None:
        self.wait(now)
        self.failures += 1
        self.last_failure = now
        if self.failures > self.free:
            extra = self.failures - self.free - 1
            self.blocked_until = now + min(self.max_wait, FIRST_WAIT_S * 2.0 ** min(extra, 32))


_server_backoff = Backoff(SERVER_FREE_GUESSES, SERVER_MAX_WAIT_S)
_server_lock = threading.Lock()


def reset_guess_limits() -> None:
    """Forgets every wrong guess of this server (tests; a restart does the same)."""
    global _server_backoff
    with _server_lock:
        _server_backoff = Backoff(SERVER_FREE_GUESSES, SERVER_MAX_WAIT_S)


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


def is_teacher() -> bool:
    """A token is set and this session entered it."""
    token = configured_token()
    if token is None or isinstance(token, _Unreadable):
        return False
    return _matches(str(st.session_state.get(ENTERED_KEY) or ""), token)


def can_start() -> bool:
    """Anyone may start runs (within their queue limit), unless the secrets file is unreadable
    (then nothing is trusted: fail closed)."""
    return not isinstance(configured_token(), _Unreadable)


def may_use_server_paths() -> bool:
    """Whether this session may name files on the server (a weights file): the teacher, or anyone
    where no token is set. Others are not even told whether a path exists."""
    token = configured_token()
    return token is None or is_teacher()


def may_act(run_owner: str | None) -> bool:
    """Whether this browser may stop, resume, cancel, rename, evaluate or delete a run owned by
    `run_owner` (core/store/ownership.py: its owner or the teacher; nobody's runs only without a token)."""
    token = configured_token()
    if isinstance(token, _Unreadable):
        return False
    return ownership.may_act(run_owner, identity.me(), teacher=is_teacher(), teacher_exists=token is not None)


def _matches(entered: str, token: str) -> bool:
    # Constant-time comparison: the time taken reveals nothing about how much of a guess was right.
    return hmac.compare_digest(entered.encode("utf-8"), token.encode("utf-8"))


def _session_backoff() -> Backoff:
    if BACKOFF_KEY not in st.session_state:
        st.session_state[BACKOFF_KEY] = Backoff(SESSION_FREE_GUESSES, SESSION_MAX_WAIT_S)
    return st.session_state[BACKOFF_KEY]


def _remember() -> None:
    """The token box changed: a guess, compared only if neither this session nor the server must wait."""
    guess = str(st.session_state.get(INPUT_KEY) or "")
    token, now, session = configured_token(), clock(), _session_backoff()
    with _server_lock:
        wait = max(session.wait(now), _server_backoff.wait(now))
        if wait > 0:
            st.session_state[REFUSED_KEY] = now + wait
            st.session_state[INPUT_KEY] = st.session_state.get(ENTERED_KEY, "")   # the box as it was
            return
        st.session_state[ENTERED_KEY] = guess
        if not guess or token is None or isinstance(token, _Unreadable):
            return
        if _matches(guess, token):
            st.session_state[BACKOFF_KEY] = Backoff(SESSION_FREE_GUESSES, SESSION_MAX_WAIT_S)
        else:
            session.failed(now)
            _server_backoff.failed(now)


def _refusal() -> str | None:
    """"Too many wrong guesses ..." while this session's last guess was refused unread."""
    until = st.session_state.get(REFUSED_KEY)
    left = until - clock() if until is not None else 0
    if left <= 0:
        st.session_state.pop(REFUSED_KEY, None)
        return None
    return (f":material/timer: Too many wrong tokens from this browser or this server: that entry was not "
            f"checked. Try again in {math.ceil(left)} s (each further wrong token doubles the wait).")


def token_widget() -> bool:
    """The sidebar field for the token (only when one is set); returns is_teacher()."""
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
                      help="For the teacher: with it you may stop, resume, cancel or delete every run. "
                           "Without it you watch every run and change only your own.")
        allowed = is_teacher()
        refusal = _refusal()
        if refusal:
            st.error(refusal)
        elif allowed:
            st.caption(":material/lock_open: Controls unlocked: you may change every run in this browser session.")
        elif st.session_state.get(ENTERED_KEY):
            st.warning(":material/lock: That is not the control token. Check it with the teacher, or clear the "
                       "field: your own runs need no token.")
        else:
            st.caption(":material/lock: You may change the runs you started; the teacher's token unlocks all.")
    return allowed
