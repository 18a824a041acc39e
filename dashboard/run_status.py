"""What the Train page's status panel shows for one run: progress and queue place turned into
display values (icons, texts, numbers or "—"). Pure and tested: no st.* calls here."""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.queue import QueueEntry, ordinal
from dashboard.charts import eta_text

ICONS = {"completed": ":material/check_circle:", "failed": ":material/error:",
         "stopped": ":material/pause_circle:", "stopping": ":material/hourglass_top:",
         "queued": ":material/schedule:", "cancelled": ":material/cancel:",
         "interrupted": ":material/warning:"}
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


def status_display(progress: dict, state: str, entry: QueueEntry | None = None) -> StatusDisplay:
    """The panel's values for a run in `state`, from its live `progress` and its queue entry."""
    phase = str(progress.get("phase") or state)
    epoch, epochs = int(_number(progress.get("epoch")) or 0), int(_number(progress.get("epochs")) or 0)
    batch, batches = int(_number(progress.get("batch")) or 0), int(_number(progress.get("batches")) or 0)
    loss, accuracy = _number(progress.get("loss")), _number(progress.get("accuracy"))
    ips = _number(progress.get("images_per_second"))
    note = ""
    if state == "queued":
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
        return StatusDisplay(state, headline, ICONS["queued"], 0.0, waiting_for, "—", "—", "—", "—", note)
    if phase == "compiling first step":
        note = "TensorFlow traces the model before the first batch: 20 s or more on a CPU (B7: ~90 s)."
    return StatusDisplay(
        state=state, headline=phase[:1].upper() + phase[1:], icon=ICONS.get(state, RUNNING_ICON),
        fraction=min(1.0, batch / batches) if batches else 0.0,
        bar_text=f"epoch {epoch} of {epochs} · batch {batch} of {batches}",
        eta=eta_text(progress.get("eta_seconds")) if state == "running" else "—",
        images_per_second=f"{ips:.0f}" if ips is not None else "—",
        loss=f"{loss:.4f}" if loss is not None else "—",
        accuracy=f"{100 * accuracy:.1f}%" if accuracy is not None else "—",
        note=note)


def where_text(status: dict) -> str:
    """Where a Ray run trains (or waits), for a caption: "" for a run trained by a server's thread."""
    if status.get("executor") != "ray":
        return ""
    sent = status.get("submitted_from") if isinstance(status.get("submitted_from"), dict) else {}
    if status.get("state") in ("running", "stopping") and status.get("pid") == sent.get("pid") \
            and status.get("host") == sent.get("host"):
        return f"Waiting for a node of the Ray cluster at {status.get('ray_address', '?')}"
    verb = "Training" if status.get("state") in ("running", "stopping") else "Trained"
    ip = f" ({status['node_ip']})" if status.get("node_ip") and status.get("node_ip") != status.get("host") else ""
    return (f"{verb} in a Ray worker on {status.get('host', '?')}{ip}, process {status.get('pid', '?')}, "
            f"cluster {status.get('ray_address', '?')}")
