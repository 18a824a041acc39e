"""What the Train page's status panel shows for one run: progress and queue place turned into
display values (icons, texts, numbers or "—"). Pure and tested: no st.* calls here."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from core.estimates.startup import COMPILING, phase_time_text, phase_words
from core.jobs.executors import where_trained
from core.jobs.queue import QueueEntry, ordinal
from core.store.states import RunState
from dashboard.charts import eta_text

ICONS = {RunState.COMPLETED: ":material/check_circle:", RunState.FAILED: ":material/error:",
         RunState.STOPPED: ":material/pause_circle:", RunState.STOPPING: ":material/hourglass_top:",
         RunState.QUEUED: ":material/schedule:", RunState.CANCELLED: ":material/cancel:",
         RunState.INTERRUPTED: ":material/warning:", RunState.PRUNED: ":material/content_cut:"}
RUNNING_ICON = ":material/directions_run:"


@dataclass(frozen=True)
class StatusDisplay:
    """Everything the panel writes, already formatted."""

    state: str
    headline: str          # "Training head (base frozen)" or "2nd in line, about 12 min"
    icon: str
    fraction: float        # the progress bar, 0..1
    bar_text: str
    eta: str
    images_per_second: str
    loss: str
    accuracy: str
    note: str              # a caption under the numbers, "" for none


def wait_text(seconds: float) -> str:
    """"about 12 min", "about 1 h 05 min", "under a minute": a wait as people say it."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    return f"about {minutes} min" if minutes < 60 else f"about {minutes // 60} h {minutes % 60:02d} min"


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def status_display(progress: dict, state: str, entry: QueueEntry | None = None,
                   typical: Mapping[str, float] | None = None, now: float | None = None) -> StatusDisplay:
    """The panel's values for a run in `state`, from its live `progress` and its queue entry.

    `typical`: this machine's usual start-up times (core.estimates.startup.typical_startup), so a start-up
    phase reads "0:12 so far · usually ≈ 25 s here"; `now` is the clock (a test's)."""
    phase = str(progress.get("phase") or state)
    epoch, epochs = int(_number(progress.get("epoch")) or 0), int(_number(progress.get("epochs")) or 0)
    batch, batches = int(_number(progress.get("batch")) or 0), int(_number(progress.get("batches")) or 0)
    loss, accuracy = _number(progress.get("loss")), _number(progress.get("accuracy"))
    ips = _number(progress.get("images_per_second"))
    note = ""
    if state == RunState.QUEUED:
        if entry is None:
            headline = "Queued"
        elif entry.wait_seconds < 60:
            headline = f"{ordinal(entry.place)} in line, starts " + ("in under a minute" if entry.wait_seconds else "next")
        else:
            headline = f"{ordinal(entry.place)} in line, {wait_text(entry.wait_seconds)}"
        note = "It starts by itself when a training slot frees; closing this tab does not lose its place."
        waiting_for = "waiting for a training slot"
        if entry is not None and entry.memory_wait:
            waiting_for, note = "waiting for memory", f"It is {entry.memory_wait}; closing this tab does not lose its place."
        return StatusDisplay(state, headline, ICONS[RunState.QUEUED], 0.0, waiting_for, "—", "—", "—", "—", note)
    started = _number(progress.get("phase_started"))
    elapsed = None if started is None else max(0.0, (now or time.time()) - started)
    note = phase_time_text(phase, elapsed, typical or {})
    if phase == COMPILING:
        note = ("Once per run, before the first batch, the network is turned into a program that runs "
                "fast" + (f": {note}." if note else "."))
    eta = eta_text(progress.get("eta_seconds")) if state == RunState.RUNNING else "—"
    bar_text = f"epoch {epoch} of {epochs} · batch {batch} of {batches}"
    if eta != "—" and batch:
        bar_text += f" · {eta} left"
    words = phase_words(phase)
    return StatusDisplay(
        state=state, headline=words[:1].upper() + words[1:], icon=ICONS.get(state, RUNNING_ICON),
        fraction=min(1.0, batch / batches) if batches else 0.0, bar_text=bar_text, eta=eta,
        images_per_second=f"{ips:.0f}" if ips is not None else "—",
        loss=f"{loss:.4f}" if loss is not None else "—",
        accuracy=f"{100 * accuracy:.1f}%" if accuracy is not None else "—",
        note=note)


def where_text(status: dict) -> str:
    """Where the run trains or trained, for the status panel's caption: its executor's words
    (core/jobs/executors), "" for a run of a server's thread."""
    return where_trained(status)
