"""Train: pick a variant and settings (or a preset), start, stop and resume, and watch it live."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.config import ConfigError, TrainConfig, training_images
from core.data import check_train_limit, data_status
from core.estimate import detect_device, estimate_table
from core.jobs import JobError
from core.runs import RESUMABLE_STATES
from core.variants import get_variant
from dashboard import control, state, train_form
from dashboard.charts import epoch_time_figure, eta_text

LIVE_REFRESH_SECONDS = 1.0
LOADED_FILE_KEY = "settings_file_loaded"      # file id of the settings file last applied to the form
ADJUSTED_KEY = "settings_file_adjusted"       # what the form could not hold of it

st.title("Train an EfficientNet on CIFAR-10")
manager = state.job_manager()
train_form.ensure_defaults()
can_act = control.token_widget()

# --- data first: say what is missing before anyone presses Start -------------------------------
data_ok, data_message = data_status()
if data_ok:
    st.caption(f":material/check_circle: {data_message}")
else:
    st.error(f"**CIFAR-10 is not available.** {data_message}")

# --- presets ------------------------------------------------------------------------------------
st.subheader("Presets")
preset_columns = st.columns(3)
for column, preset in zip(preset_columns, train_form.presets()):
    with column:
        st.button(preset.label, key=f"preset_{preset.name}", width="stretch",
                  on_click=train_form.apply_settings, args=(preset.settings,))
        st.caption(preset.expectation)


def settings_file() -> None:
    """A JSON file of settings (e.g. a run's config.json) loaded into the form once, before the
    widgets are drawn; any wrong value is reported by name and nothing is applied."""
    uploaded = st.file_uploader("Or load settings from a file (a run's config.json, or your own JSON)",
                                type=["json"], key="settings_file")
    if uploaded is None:
        st.session_state.pop(ADJUSTED_KEY, None)
        return
    try:
        config = TrainConfig.from_json(uploaded.getvalue().decode("utf-8"))
    except UnicodeDecodeError:
        st.error(f"**{uploaded.name} was not loaded:** config: expected a UTF-8 JSON text file; got binary data")
        return
    except ConfigError as exc:
        st.error(f"**{uploaded.name} was not loaded:** {exc}")
        return
    if st.session_state.get(LOADED_FILE_KEY) == uploaded.file_id:
        return
    st.session_state[LOADED_FILE_KEY] = uploaded.file_id
    st.session_state[ADJUSTED_KEY] = train_form.apply_settings(config.to_dict())
    st.toast(f"Loaded the settings of {uploaded.name}")


settings_file()

# --- variant and its facts ----------------------------------------------------------------------
st.subheader("Model")
variant = get_variant(train_form.variant_picker())
image_size = int(st.session_state[train_form.KEY_PREFIX + "image_size"])
train_labels = state.training_labels() if data_ok else None     # None: CIFAR-10's own 5,000 per class
val_fraction = float(st.session_state[train_form.KEY_PREFIX + "val_fraction"])
all_images = training_images(0, val_fraction, train_labels)
train_limit = int(st.session_state[train_form.KEY_PREFIX + "train_limit"])
train_images = training_images(train_limit, val_fraction, train_labels)
device = detect_device()
estimates = pd.DataFrame(estimate_table(image_size, train_images, device))
estimates["selected"] = estimates["variant"] == variant.name.upper()
this = estimates[estimates["selected"]].iloc[0]
m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("Parameters (no top)", f"{variant.base_params / 1e6:.1f} M")
m2.metric("Layers", variant.base_layers)
m3.metric("Native resolution", f"{variant.resolution} px")
m4.metric("ImageNet top-1", f"{variant.imagenet_top1:.1f}%")
m5.metric("Est. time per epoch", eta_text(this["seconds_per_epoch"]),
          help=f"Rough estimate for {device['name']} at {image_size} px on {train_images:,} images, scaled from "
               "figures we measured on a 2-core CPU (B0: 300 images/s at 32 px, 10 at 224 px); GPU figures "
               "are a guess. The first step also spends 20 s or more compiling.")
with st.expander(f"Time per epoch for every variant at {image_size} px on {device['name']}"):
    st.plotly_chart(epoch_time_figure(estimates), width="stretch", theme=None)

train_form.group_widgets("model")
with st.expander("Optimisation", expanded=True):
    train_form.group_widgets("optimisation")
with st.expander("Learning-rate schedule and early stopping"):
    train_form.group_widgets("schedule")
with st.expander("Data, augmentation and hardware"):
    train_form.group_widgets("data", extra_help={"train_limit": f"All, here: {all_images:,} images (what "
                                                                f"val_fraction={val_fraction:g} leaves)."})
    train_form.group_widgets("hardware")

# A loaded file's choice the form does not offer (one for the command line) is said, not hidden.
for note in st.session_state.get(ADJUSTED_KEY, []):
    st.warning(note)

config, problem = train_form.build_config()
if config is not None and config.train_limit and train_labels is not None:
    try:   # a limit the data set cannot meet is a setting to fix now, not a failed run later
        check_train_limit(config.train_limit, config.val_fraction, train_labels)
    except ConfigError as exc:
        config, problem = None, str(exc)
if config is not None:   # what only starting checks (a weights file), told only to who may start
    problem, weights_note = train_form.start_check(config, can_act)
    config = None if problem else config
    if weights_note:
        st.caption(f":material/lock: {weights_note}")
if problem:
    st.error(f"**Check the settings:** {problem}")
else:
    for note in config.warnings():
        st.warning(note)


# --- controls -----------------------------------------------------------------------------------
def start_training() -> None:
    # Checked here too: a disabled button is only a hint to the browser.
    if not control.can_control():
        st.session_state["train_error"] = control.LOCKED_HELP
        return
    if config is None:
        st.session_state["train_error"] = f"Check the settings: {problem}"
        return
    try:
        run_id = manager.start(config)
        st.session_state[state.SELECTED_RUN_KEY] = run_id
        st.toast(f"Started run {run_id}")
    except JobError as exc:
        st.session_state["train_error"] = str(exc)


active_when_drawn = manager.active_run_id   # the buttons below are drawn for this
busy = active_when_drawn is not None
c1, c2, _ = st.columns([1, 1, 3])
c1.button(":material/play_arrow: Start training", type="primary", width="stretch", on_click=start_training,
          disabled=bool(problem) or not data_ok or busy or not can_act,
          help="Runs in the background: closing or refreshing this tab does not stop it."
          if can_act else control.LOCKED_HELP)
if c2.button(":material/stop: Stop", width="stretch", disabled=not busy or not can_act,
             help="Stops at the next batch and saves a checkpoint you can resume."
             if can_act else control.LOCKED_HELP):
    if control.can_control():
        manager.stop()
if busy:
    st.caption(f"Run `{manager.active_run_id}` is training; one run at a time (it already uses the whole "
               "machine). Stop it or wait for it to finish before starting another.")
if error := st.session_state.pop("train_error", None):
    st.error(error)


def status_panel() -> None:
    """The live part of the page: redrawn every second or so without rerunning the page, and the
    whole page when a run starts or ends (here or in another tab), so Start, Stop and Resume match."""
    if manager.active_run_id != active_when_drawn:
        st.rerun()
    if busy:
        state.keep_live_refresh_in_budget(LIVE_REFRESH_SECONDS)
    progress = manager.progress()
    if not progress.get("run_id"):
        st.info("No training in this session yet. Choose a preset or settings, then press Start.")
        return
    run_state = progress.get("state", "queued")
    phase = progress.get("phase", run_state)
    icon = {"completed": ":material/check_circle:", "failed": ":material/error:", "stopped": ":material/pause_circle:",
            "stopping": ":material/hourglass_top:"}.get(run_state, ":material/directions_run:")
    st.markdown(f"### {icon} {phase.capitalize()} — run `{progress['run_id']}`")
    epoch, epochs = int(progress.get("epoch") or 0), int(progress.get("epochs") or 0)
    batch, batches = int(progress.get("batch") or 0), int(progress.get("batches") or 0)
    fraction = batch / batches if batches else 0.0
    st.progress(min(1.0, fraction), text=f"epoch {epoch} of {epochs} · batch {batch} of {batches}")
    k1, k2, k3, k4, k5 = st.columns(5)
    k1.metric("State", run_state)
    k2.metric("ETA", eta_text(progress.get("eta_seconds")) if run_state == "running" else "—")
    ips = progress.get("images_per_second")
    k3.metric("Images/s", f"{ips:.0f}" if isinstance(ips, float) and ips == ips else "—")
    loss, accuracy = progress.get("loss"), progress.get("accuracy")
    k4.metric("Loss", f"{loss:.4f}" if isinstance(loss, float) else "—")
    k5.metric("Accuracy", f"{100 * accuracy:.1f}%" if isinstance(accuracy, float) and accuracy == accuracy else "—")
    if phase == "compiling first step":
        st.caption("TensorFlow traces the model before the first batch: 20 s or more on a CPU (B7: ~90 s).")
    if progress.get("error"):
        st.error(f"**The run {run_state}:** {progress['error']}")
    if run_state == "completed":
        summary = state.status(progress["run_id"])
        if summary.get("test_accuracy") is not None:
            st.success(f"Test accuracy {100 * summary['test_accuracy']:.1f}% on "
                       f"{summary.get('test_images', 10_000):,} CIFAR-10 test images. "
                       "See the confusion matrix and mistakes under *Explore results*.")


st.subheader("Status")
# While a run trains, each redraw's CPU is taken from it: a crowd of viewers redraws less often.
st.fragment(run_every=state.live_refresh_seconds(LIVE_REFRESH_SECONDS) if busy else LIVE_REFRESH_SECONDS)(status_panel)()

# --- resume -------------------------------------------------------------------------------------
st.subheader("Resume a run")
resumable = [s for s in state.run_summaries() if s.state in RESUMABLE_STATES and not s.damaged]
if not resumable:
    st.caption("Stopped, interrupted, failed and finished runs appear here; they continue from their last checkpoint.")
else:
    labels = {s.run_id: state.run_label(s) + f" · {s.epochs_done}/{s.epochs} epochs" for s in resumable}
    r1, r2, r3 = st.columns([3, 1, 1])
    run_id = r1.selectbox("Run", list(labels), format_func=labels.get, key="resume_run")
    done = next(s.epochs_done for s in resumable if s.run_id == run_id)
    target = r2.number_input("Total epochs", done + 1, 1000, value=done + 1, key="resume_epochs",
                             help="The total to reach, counting the epochs already done.")
    r3.write("")
    if r3.button(":material/replay: Resume", width="stretch", disabled=busy or not can_act,
                 help=None if can_act else control.LOCKED_HELP):
        try:
            if not control.can_control():
                raise JobError(control.LOCKED_HELP)
            manager.resume(run_id, int(target))
            st.session_state[state.SELECTED_RUN_KEY] = run_id
            st.rerun()
        except (JobError, ValueError) as exc:
            st.error(str(exc))
