"""Train: a card per preset, each started with one click; the run's live panel and the queue right
under them; then your own settings, start, stop and resume."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.data.cifar10 import check_train_limit, data_status, training_images
from core.errors import UserInputError
from core.estimates.memory import check_fits
from core.estimates.timing import (detect_device, device_report, estimate_table, nvidia_gpu_names, run_estimate,
                                   training_speedup)
from core.jobs.queue import ordinal, queue_entries
from core.jobs.scheduler import JobError
from core.settings.config import MAX_EPOCHS, ConfigError, TrainConfig
from core.settings.variants import get_variant
from core.store.runs import RESUMABLE_STATES, check_label
from core.store.states import ENDED_WITH_A_REASON, TRAINING_STATES, RunState
from dashboard import control, identity, lr_panel, nav, start_guard, state, train_form
from dashboard import preset_cards as preset_cards_mod
from dashboard.charts import batch_loss_figure, epoch_time_figure, eta_text
from dashboard.run_status import status_display, wait_text, where_text

LIVE_REFRESH_SECONDS = 1.0
LOADED_FILE_KEY = "settings_file_loaded"      # file id of the settings file last applied to the form
ADJUSTED_KEY = "settings_file_adjusted"       # what the form could not hold of it

st.title("Train an EfficientNet on CIFAR-10")
st.markdown("Pick a recipe and press **Start**: a network learns to tell CIFAR-10's ten kinds of photo apart.")
manager = state.job_manager()
train_form.ensure_defaults()
control.token_widget()
can_start = control.can_start()
RUN_NAME_KEY, RUN_AUTHOR_KEY = "run_name", "run_author"

# --- data first: say what is missing before anyone presses Start -------------------------------
data_ok, data_message = data_status()
if not data_ok:
    st.error(f"**CIFAR-10 is not available.** {data_message}")
train_labels = state.training_labels() if data_ok else None     # None: CIFAR-10's own 5,000 per class
device = detect_device()


def start(config: TrainConfig, name: str, author: str, error_key: str) -> None:
    """Queues `config` as this browser's run; a refusal goes to st.session_state[error_key]."""
    # The same Start again moments later (a double click, or one click a busy server dispatched
    # twice) gets the run it made back, from any session (dashboard/start_guard.py). Someone who
    # wants the copy presses Start again a few seconds later.
    what = (str(manager.store.root), config.to_json(), name, author)
    try:
        started = start_guard.GUARD.start_once(what, state.session_id(),
                                               lambda: manager.start(config, name=name, author=author,
                                                                     owner=identity.me(),
                                                                     teacher=control.is_teacher()))
    except JobError as exc:
        st.session_state[error_key] = str(exc)
        return
    run_id = started.run_id
    state.remember_my_run(run_id)
    if not started.new:
        st.toast(f"Run {run_id} has just started with these settings: one run, not two")
        return
    queued = state.status(run_id).get("state") == RunState.QUEUED
    st.toast(f"Run {run_id} is queued: it starts when a slot frees" if queued else f"Started run {run_id}")


def start_preset(preset) -> None:
    """A card's Start: the preset's settings, also loaded into the form below, started at once."""
    if not control.can_start() or not data_ok:   # checked here too: a disabled button is only a hint
        st.session_state["preset_error"] = control.UNREADABLE_HELP if data_ok else data_message
        return
    train_form.apply_settings(preset.settings)
    name = st.session_state.get(RUN_NAME_KEY, "") or preset_cards_mod.plain_label(preset.label)
    start(preset.config(), name, st.session_state.get(RUN_AUTHOR_KEY, ""), "preset_error")


# --- the first screen: a card per preset, each with what to expect here and its own Start ------
def preset_cards() -> None:
    preset_cards_mod.preset_cards(
        train_form.presets(), device=device, imagenet_available=train_form.imagenet_available(),
        train_images=lambda p: training_images(int(p.settings.get("train_limit", 0)),
                                               float(p.config().val_fraction), train_labels),
        start=start_preset, can_start=can_start and data_ok)
    if error := st.session_state.pop("preset_error", None):
        st.error(error)


# --- the run this session started (or what trains here), and the queue: right under the cards ---
def shown_run_id() -> str | None:
    """The run the panel follows: the last one this session started, else what trains here now."""
    mine = state.my_runs()
    return mine[-1] if mine else manager.active_run_id


def run_actions(run_id: str, run_state: str, allowed: bool, key_prefix: str = "panel") -> None:
    """Stop (a training run, here or in any process) or Cancel (a queued one), for this run only,
    enabled where this browser may change it (its own run, or the teacher); the click asks again."""
    if run_state in TRAINING_STATES:
        if st.button(":material/stop: Stop", key=f"{key_prefix}_stop_{run_id}",
                     disabled=run_state == RunState.STOPPING or not allowed,
                     help="Stops at the next batch and saves a checkpoint there; resuming goes on "
                          "from the batch after it, in the same order." if allowed else control.LOCKED_HELP):
            if state.may_act(run_id):
                manager.stop(run_id)
                st.rerun()
    elif run_state == RunState.QUEUED:
        if st.button(":material/cancel: Cancel", key=f"{key_prefix}_cancel_{run_id}", disabled=not allowed,
                     help="Leaves the queue; the run stays listed (cancelled) and can be resumed later."
                     if allowed else control.LOCKED_HELP):
            if state.may_act(run_id):
                manager.cancel(run_id)
                st.rerun()


def status_panel() -> None:
    """The live part of the page: redrawn every second or so without rerunning the page, and the
    whole page when the set of training runs changes (here or in another tab)."""
    if manager.active_run_ids != active_when_drawn:
        st.rerun()
    if busy:
        state.keep_live_refresh_in_budget(LIVE_REFRESH_SECONDS)
    if manager.problem:
        st.error(f"**Queued runs cannot start now:** {manager.problem}")
    entries = queue_entries(manager.store, manager.slots, manager.progress, manager.memory_waits)
    run_id = shown_run_id()
    if run_id is None:
        st.info("No run yet: press a recipe's Start above.")
    else:
        run_state = state.status(run_id).get("state", "unknown")
        entry = next((e for e in entries if e.run_id == run_id), None)
        progress = manager.progress(run_id)
        shown = status_display(progress, run_state, entry, state.typical_startup(run_id))
        summary_label = entry.label if entry else ""
        st.markdown(f"### {shown.icon} {shown.headline} — run `{run_id}`")
        if summary_label:
            st.text(summary_label)
        st.progress(shown.fraction, text=shown.bar_text)
        k1, k2, k3, k4 = st.columns(4)     # the headline says the state
        k1.metric("Time left", shown.eta)
        k2.metric("Images/s", shown.images_per_second)
        k3.metric("Training loss", shown.loss)
        k4.metric("Training accuracy", shown.accuracy)
        if shown.note:
            st.caption(shown.note)
        if run_state != RunState.QUEUED and progress.get("batch_losses"):   # ended: its last epoch's
            running_loss(run_id, progress)
        run_actions(run_id, run_state, control.may_act(entry.owner) if entry else state.may_act(run_id))
        status = state.status(run_id)
        if where := where_text(status):
            st.caption(f":material/hub: {where}")
        if status.get("error") and run_state in ENDED_WITH_A_REASON:
            st.error(f"**The run {run_state}:** {status['error']}")
        if run_state == RunState.COMPLETED and status.get("test_accuracy") is not None:
            st.success(f"Test accuracy {100 * status['test_accuracy']:.1f}% on "
                       f"{status.get('test_images', 10_000):,} CIFAR-10 test images. "
                       "See the confusion matrix and mistakes under *Explore results*.")
    queue_table(entries)


def running_loss(run_id: str, progress: dict) -> None:
    """The running epoch's loss from its first batch on (the first sign that training works), and
    the last epoch's once the run has ended."""
    figure = batch_loss_figure(progress["batch_losses"], epoch=progress.get("epoch"), uirevision=run_id)
    figure.update_layout(height=300, showlegend=False)   # its title says what the line is
    st.plotly_chart(figure, width="stretch", theme=None, key="panel_loss_chart")
    st.page_link(nav.page("curves"), label="Every curve of this run: Live curves", icon=":material/show_chart:")


def queue_table(entries) -> None:
    """Everyone's runs in training and in line, one row each, with Stop or Cancel where this
    session may use them (names are shown as plain text, never as Markdown)."""
    if not entries:
        return
    waiting = sum(e.state == RunState.QUEUED for e in entries)
    where = "on this server" if manager.trains_here else "on the cluster"
    st.markdown(f"**Training now and in line** · {manager.slots} at a time {where} · {waiting} waiting")
    for e in entries:
        c1, c2, c3, c4 = st.columns([1, 4, 2, 1], vertical_alignment="center")
        c1.text("training" if e.place == 0 else ordinal(e.place))
        c2.text(f"{e.run_id}  {e.label}".strip())
        if e.memory_wait:
            c3.text("waiting for memory", help=e.memory_wait[:1].upper() + e.memory_wait[1:] + ".")
        else:
            c3.text(f"{e.state} · {wait_text(e.run_seconds)} left" if e.place == 0
                    else f"starts in {wait_text(e.wait_seconds)}")
        with c4:
            run_actions(e.run_id, e.state, control.may_act(e.owner), key_prefix="queue")


active_when_drawn = manager.active_run_ids   # the panel redraws the page when this changes
busy = bool(active_when_drawn) or bool(manager.store.queue())


def status_section() -> None:
    st.subheader("Status")
    # While a run trains, each redraw's CPU is taken from it: a crowd of viewers redraws less often.
    st.fragment(run_every=state.live_refresh_seconds(LIVE_REFRESH_SECONDS) if busy else LIVE_REFRESH_SECONDS)(
        status_panel)()


# Before a Start the recipes lead; after one, the view follows the run: its panel comes first.
if state.my_runs():
    status_section()
    preset_cards()
else:
    preset_cards()
    status_section()


# --- your own settings --------------------------------------------------------------------------
st.header("Your own settings")
if data_ok:
    st.caption(f":material/check_circle: {data_message}")
# Which device trains: TensorFlow is asked (a child process, once) only where a GPU is there to miss.
devices = None if not manager.trains_here else device_report(ask_tensorflow=bool(nvidia_gpu_names()))
if devices is None:   # on a Ray cluster the node, and so the device, is Ray's choice
    st.caption(f":material/hub: {manager.where_runs_train()}")
elif devices.gpu_unused:
    st.warning(f"**The GPU is not used.** {devices.message}")
    st.code(devices.fix_command, language="bash")
else:
    st.caption(f":material/memory: {devices.message}")


def settings_file() -> None:
    """A JSON file of settings (e.g. a run's config.json) loaded into the form once, before the
    widgets are drawn; any wrong value is reported by name and nothing is applied."""
    uploaded = st.file_uploader("A run's config.json, or your own JSON of settings", type=["json"],
                                key="settings_file")
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


# Before the widgets: a loaded file's values must be in place when they are drawn.
with st.expander(":material/upload_file: Load settings from a file",
                 expanded=st.session_state.get("settings_file") is not None):
    settings_file()

# --- the first lesson's settings: the variant and its facts, then the few a first run changes ------
variant = get_variant(train_form.variant_picker())
image_size = int(st.session_state[train_form.KEY_PREFIX + "image_size"])
val_fraction = float(st.session_state[train_form.KEY_PREFIX + "val_fraction"])
all_images = training_images(0, val_fraction, train_labels)
train_limit = int(st.session_state[train_form.KEY_PREFIX + "train_limit"])
train_images = training_images(train_limit, val_fraction, train_labels)
# The parts that train set the speed as much as the size does (the head alone trains much faster).
form_values = train_form.form_values()
speedup = training_speedup(form_values)
whole_run = run_estimate({**form_values, "variant": variant.name}, train_images, device)
estimates = pd.DataFrame(estimate_table(image_size, train_images, device, speedup))
estimates["selected"] = estimates["variant"] == variant.name.upper()
this = estimates[estimates["selected"]].iloc[0]
m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("Parameters (no top)", f"{variant.base_params / 1e6:.1f} M")
m2.metric("Layers", variant.base_layers)
m3.metric("Native resolution", f"{variant.resolution} px")
m4.metric("ImageNet top-1", f"{variant.imagenet_top1:.1f}%")
parts = [f"{eta_text(this['seconds_per_epoch'])} per epoch on {train_images:,} images, so "
         f"{eta_text(whole_run.training)} of training",
         f"{eta_text(whole_run.validation)} validating" if whole_run.validation else "no validation",
         f"{eta_text(whole_run.test)} predicting the test set (and its mirror pass where the test-time flip is on)",
         f"{eta_text(whole_run.tracing)} compiling the first step"]
m5.metric("Est. whole run", eta_text(whole_run.total),
          help=f"An estimate for {device['name']} at {image_size} px: " + "; ".join(parts) + ". Scaled from "
               f"the speeds measured on 2-core CPUs (docs/RECIPES.md, tables E and H); what trains here makes "
               f"training {speedup:.1f}x that. GPU figures are a guess.")
with st.expander(f"Time per epoch for every variant at {image_size} px on {device['name']}"):
    st.plotly_chart(epoch_time_figure(estimates), width="stretch", theme=None)
train_form.group_widgets("basics", columns=len(train_form.group_names("basics")))

# --- the rest, one collapsed section each: open what the lesson is about ---------------------------
with st.expander(":material/tune: Optimisation: optimizer, schedule, early stopping"):
    train_form.group_widgets("optimisation")
with st.expander(":material/photo_library: Data and augmentation"):
    train_form.group_widgets("data", extra_help={"train_limit": f"All, here: {all_images:,} images (what "
                                                                f"val_fraction={val_fraction:g} leaves)."})
with st.expander(":material/school: Fine-tuning (transfer learning)"):
    train_form.group_widgets("fine_tuning")
with st.expander(":material/account_tree: Network details: head, dropout, BatchNorm, progressive resizing"):
    train_form.group_widgets("model")
with st.expander(":material/memory: Hardware"):
    train_form.group_widgets("hardware")
st.expander(":material/science: What we tried (every recipe measured)").markdown(train_form.what_we_tried())

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
    problem, weights_note = train_form.start_check(config, control.may_use_server_paths())
    config = None if problem else config
    if weights_note:
        st.caption(f":material/lock: {weights_note}")
if config is not None and manager.trains_here:   # training runs on this server: a config that
    # cannot fit would take it down (on a Ray cluster, Ray picks a node by its resources)
    try:
        capacity, where = manager.memory.capacity()
        check_fits(config, capacity, where=where)   # what this server's runs could have at most
    except UserInputError as exc:                   # ConfigError, or a bad EFFLAB_MEMORY_GB
        config, problem = None, str(exc)
if problem:
    st.error(f"**Check the settings:** {problem}")
else:
    for note in config.warnings():
        st.warning(note)


# --- controls: start joins the queue; the panel above follows the run ------------------------------
def start_training() -> None:
    # Checked here too: a disabled button is only a hint to the browser.
    if config is None:
        st.session_state["train_error"] = f"Check the settings: {problem}"
        return
    if refusal := train_form.start_refusal(config):
        st.session_state["train_error"] = refusal
        return
    start(config, st.session_state.get(RUN_NAME_KEY, ""), st.session_state.get(RUN_AUTHOR_KEY, ""), "train_error")


n1, n2 = st.columns(2)
n1.text_input("Run name (optional)", key=RUN_NAME_KEY, max_chars=60, placeholder="Ana — lr 3e-3",
              help="Shown wherever the run is listed, so you can find yours. Letters, digits, spaces "
                   "and everyday punctuation, up to 60 characters.")
n2.text_input("Your name (optional)", key=RUN_AUTHOR_KEY, max_chars=60, placeholder="Ana")
label_problem = ""
for field_name, key in (("name", RUN_NAME_KEY), ("author", RUN_AUTHOR_KEY)):
    try:
        check_label(field_name, st.session_state.get(key, ""))
    except ValueError as exc:
        label_problem = str(exc)
if label_problem:
    st.error(f"**Check the run name:** {label_problem}")

c1, c2, _ = st.columns([2, 3, 4])   # wide enough at 1280 px for "Find a learning rate" in full
c1.button(":material/play_arrow: Start training", type="primary", width="stretch", on_click=start_training,
          disabled=bool(problem) or bool(label_problem) or not data_ok or not can_start,
          help="Joins the queue and trains when a slot frees, in the background: closing or refreshing "
               "this tab does not stop it. The run is yours: only you (and the teacher) can stop or "
               "delete it." if can_start else control.UNREADABLE_HELP)
with c2:
    lr_panel.find_button(manager, config, disabled=bool(problem) or not data_ok or not can_start)
if error := st.session_state.pop("train_error", None):
    st.error(error)
lr_panel.finder_fragment(manager)


# --- resume -------------------------------------------------------------------------------------
st.subheader("Resume a run")
# Only the runs this browser may resume: its own, or every run for the teacher.
resumable = [s for s in state.run_summaries()
             if s.state in RESUMABLE_STATES and not s.damaged and control.may_act(s.owner)]
if not resumable:
    st.caption("Your stopped, interrupted, failed, cancelled and finished runs appear here; they continue "
               "from their last checkpoint, through the queue.")
else:
    labels = {s.run_id: state.resume_label(s) for s in resumable}
    r1, r2, r3 = st.columns([3, 1, 1])
    run_id = r1.selectbox("Run", list(labels), format_func=labels.get, key="resume_run")
    chosen = next(s for s in resumable if s.run_id == run_id)
    done = chosen.epochs_done
    target = r2.number_input("Total epochs", done + 1, MAX_EPOCHS, value=done + 1, key="resume_epochs",
                             help="The total to reach, counting the epochs already done.")
    r3.write("")
    allowed = state.may_act(run_id)
    if r3.button(":material/replay: Resume", width="stretch", disabled=not allowed,
                 help="Joins the queue like a new run." if allowed else control.LOCKED_HELP):
        try:
            if not state.may_act(run_id):
                raise JobError(control.LOCKED_HELP)
            manager.resume(run_id, int(target), teacher=control.is_teacher())
            state.remember_my_run(run_id)
            st.rerun()
        except (JobError, ValueError) as exc:
            st.error(str(exc))
    if chosen.batches_kept:        # the picker's text is cut short at a projector's width: say it here
        st.caption(f"Stopped {chosen.batches_kept} batches into epoch {done + 1}: Resume goes on from batch "
                   f"{chosen.batches_kept + 1} with the weights it had, so nothing trained is lost.")

# The page has drawn itself: a Start this session made is on screen, and a double click's window
# runs from now (dashboard/start_guard.py).
start_guard.GUARD.page_drawn(state.session_id())
