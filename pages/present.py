"""Presentation mode: full-screen slides for a projector, built from live data.

Opened with ?present=1 (&run=…&slide=N) or the sidebar toggle. The menu, sidebar and toolbar are
hidden and text is enlarged (dashboard/slides.py); Previous / Next are buttons with the arrow keys
as Streamlit keyboard shortcuts (st.button(shortcut="Left" / "Right")). The slide number lives in
the URL, so a refresh or a shared link shows the same slide. The curves slide of a training run
redraws itself every few seconds. The last two show the whole class: the class board, and a sweep's
trials through their settings (&sweep=NAME, else the sweep the run is a trial of, else the newest).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.analysis.evaluate import mistakes
from core.content.history import COMPOUND_SCALING, compound_scaling, history_frame
from core.data.cifar10 import CLASS_NAMES, DataError
from core.settings.variants import VARIANTS
from core.store.runs import ACTIVE_STATES
from core.sweeps import results as sweep_results
from core.sweeps.board import class_board, trial_run_ids
from core.sweeps.study import list_sweeps
from dashboard import model_answers, nav, slides, state, sweep_charts
from dashboard.board_charts import board_figure
from dashboard.charts import (batch_loss_figure, curves_figure, loss_per_batch_figure, loss_per_batch_leads,
                              percent_text)
from dashboard.images import caption, overlay_heatmap, upscale
from dashboard.result_charts import (SCALING_LABELS, confusion_figure, history_scatter_figure, runs_frame,
                                     scaling_figure)

IMAGE_SIDE = 200                     # px of each test image on a slide
STRIP_SIDE = 112                     # px of the title slide's one-image-per-class strip
CHART_CONFIG = {"displayModeBar": False}

st.html(slides.PRESENTATION_CSS)
st.query_params[nav.PRESENT_PARAM] = "1"
COUNT = len(slides.SLIDES)


def go(delta: int) -> None:
    index = slides.slide_number(st.query_params.get(nav.SLIDE_PARAM)) + delta
    st.query_params[nav.SLIDE_PARAM] = str(min(max(index, 0), COUNT - 1) + 1)


summaries = [s for s in state.run_summaries() if not s.damaged]
by_id = {s.run_id: s for s in summaries}
active = state.job_manager().active_run_id
# Unless the URL or an earlier page names a run, the slides open on the one training now, else the
# first with test predictions: state.select_run starts on the first of its list.
opening = (active if active in by_id else None) or next((s.run_id for s in summaries if s.has_predictions), None)
run_ids = sorted(by_id, key=lambda rid: rid != opening)

index = slides.slide_number(st.query_params.get(nav.SLIDE_PARAM))
st.query_params[nav.SLIDE_PARAM] = str(index + 1)
slide = slides.SLIDES[index]

bar = st.columns([8, 1.1, 1.9, 1.6, 1.2], vertical_alignment="center")
bar[0].title(slide.title, anchor=False)
bar[1].markdown(f"**{index + 1} / {COUNT}**")
bar[2].button("Previous", key="slide_prev", shortcut="Left",
              on_click=go, args=(-1,), disabled=index == 0, width="stretch")
bar[3].button("Next", key="slide_next", shortcut="Right",
              on_click=go, args=(1,), disabled=index == COUNT - 1, type="primary", width="stretch")
leave = bar[4].button("Exit", key="slide_exit", icon=":material/close:", width="stretch",
                      help="Leave presentation mode")
slide_area = st.container()   # the slide, drawn at the end once its run is chosen
# The run picker: under the title slide; on the other slides in the sidebar, which is hidden here.
picker = dict(label="Run shown on the slides", key="present_run",
              labels={s.run_id: state.run_label(s) for s in summaries})
if slide.key == "title":
    with st.columns([2, 3])[0]:
        run_id = state.select_run(run_ids, sidebar=False, **picker)
    if run_id:
        st.caption("Move between slides with ← and → (or the buttons). A link with ?present=1 opens this view.")
else:
    run_id = state.select_run(run_ids, sidebar=True, **picker)
if leave:
    st.switch_page(nav.page_by_url_path(st.session_state.pop(nav.RETURN_KEY, None)),
                   query_params={state.RUN_QUERY_PARAM: run_id} if run_id else None)
summary = by_id.get(run_id)
config = summary.config if summary else {}
variant = str(config.get("variant", "b0")).upper()


def need_run() -> bool:
    if summary is None:
        st.markdown("No runs yet. Train one on the **Train** page (the Quick demo preset takes a few "
                    "minutes), then come back.")
        return False
    return True


def need_predictions() -> object | None:
    if not need_run():
        return None
    evaluation = state.evaluation(run_id)
    if evaluation is None:
        st.markdown(f"Run `{run_id}` has no test-set predictions yet: they are written when it "
                    "finishes (or with *Evaluate now* on the confusion page).")
    return evaluation


def test_images_for(n: int) -> np.ndarray | None:
    try:
        images = state.test_images()
    except DataError as exc:
        st.markdown(f"The CIFAR-10 test images cannot be loaded here, so there are no pictures to show. {exc}")
        return None
    if len(images) != n:
        st.markdown("This run was evaluated on another copy of the test set, so its images are not here.")
        return None
    return images


def chart(fig, key: str) -> None:
    st.plotly_chart(fig, key=key, config=CHART_CONFIG, theme=None, width="stretch")


# --- the slides ------------------------------------------------------------------------------------
def class_strip() -> None:
    """One test image of each class, named: what the model has to tell apart."""
    try:
        images = state.test_images()
        labels = state.predictions(run_id)[0] if run_id and state.predictions(run_id) is not None else None
    except DataError:
        images = labels = None
    if images is None or labels is None or len(labels) != len(images):
        st.markdown(" · ".join(CLASS_NAMES))
        return
    cols = st.columns(len(CLASS_NAMES), gap="xxsmall")
    for k, (col, name) in enumerate(zip(cols, CLASS_NAMES)):
        found = np.flatnonzero(labels == k)
        if len(found):
            col.image(upscale(images[int(found[0])], STRIP_SIDE, "nearest"), output_format="PNG",
                      width=STRIP_SIDE, caption=name)


def title_slide() -> None:
    st.markdown("### An image classifier you can watch learn: a convolutional network learning "
                "CIFAR-10, 60,000 tiny photos of 10 kinds of thing.")
    class_strip()
    if not need_run():
        return
    cols = st.columns(4)
    cols[0].metric("Network", f"EfficientNet-{variant}")
    cols[1].metric("Input", f"{config.get('image_size', '?')} px")
    cols[2].metric("Epochs", f"{summary.epochs_done} of {summary.epochs}")
    accuracy = summary.test_accuracy
    cols[3].metric("Test accuracy", "—" if accuracy is None else f"{100 * accuracy:.1f}%",
                   help="Share of the 10,000 test images it classifies correctly (10% is guessing)")
    if summary.label:
        st.text(f"Run: {summary.label}")          # a student's name: plain text, never Markdown
    if summary.state in ACTIVE_STATES:
        st.markdown(f"**Training right now** ({summary.state}): the curves slide updates live.")


def history_slide() -> None:
    chart(slides.projector(history_scatter_figure(history_frame(), runs_frame(summaries), "top1"),
                           slides.CHART_HEIGHT - 20), "slide_history")
    st.markdown("Lower is better. EfficientNet-B0 beats ResNet-50 on ImageNet with about a fifth of its parameters.")


def scaling_slide() -> None:
    a, b, g = (COMPOUND_SCALING[k] for k in ("alpha", "beta", "gamma"))
    left, right = st.columns([2, 3], gap="large")
    with left:
        st.latex(rf"d = {a}^{{\phi}},\ w = {b}^{{\phi}},\ r = {g}^{{\phi}}")
        st.markdown("Scale **depth** (layers), **width** (channels) and **resolution** (pixels) "
                    "together: each step of φ doubles the computation.")
        rows = ["| | px | params | ImageNet |", "|---|---:|---:|---:|"]
        for name, v in VARIANTS.items():
            mark = "**" if name.upper() == variant else ""
            rows.append(f"| {mark}{name.upper()}{mark} | {v.resolution} | {v.paper_params_m:g}M | {v.imagenet_top1}% |")
        st.markdown("\n".join(rows))
    with right:
        default = max(1, slides.variant_phi(variant))
        phi = st.select_slider("φ", options=list(range(8)), value=default, key="present_phi",
                               format_func=lambda p: f"φ = {p} (≈ B{p})", label_visibility="collapsed")
        fig = slides.projector(scaling_figure(phi), slides.CHART_HEIGHT - 70)
        scaled = compound_scaling(phi)
        fig.update_layout(title_text=f"B0 × these at φ = {phi}: {scaled['resolution_px']} px input")
        fig.update_xaxes(tickvals=list(SCALING_LABELS), tickangle=0,
                         ticktext=[label.replace(" (", "<br>(") for label in SCALING_LABELS])
        chart(fig, "slide_scaling")


def config_slide() -> None:
    if not need_run():
        return
    left, right = st.columns([3, 2], gap="large")
    with left:
        rows = ["| Setting | |", "|---|---|"] + [f"| {label} | **{value}** |"
                                                  for label, value in slides.config_facts(config)]
        st.markdown("\n".join(rows))
    with right:
        st.metric("State", summary.state)
        st.metric("Best validation accuracy",
                  "—" if summary.best_val_accuracy is None else f"{100 * summary.best_val_accuracy:.1f}%")
        st.metric("Training time", "—" if summary.duration_seconds is None
                  else f"{summary.duration_seconds / 60:.1f} min")
        st.caption(f"Run {run_id}")


EPOCH_CURVES_NOTE = "Solid: the training images. Dashed: validation images it never learns from."
BATCH_CURVES_NOTE = "The loss on each batch of training images (thick: smoothed)."   # one line: no scrolling


def loss_figure(frames: dict, progress: dict) -> tuple:
    """(the slide's loss chart, whether it is per batch). A one-epoch run (the presets) has one point
    per epoch, so its slide shows the loss batch by batch: every recorded batch once the epoch is
    done, the running epoch's batches while it trains; other runs, and a one-epoch run before its
    first batch, the loss per epoch."""
    if loss_per_batch_leads([summary.epochs]):
        history = state.batch_losses(run_id)
        if history:
            return loss_per_batch_figure({variant: history}, uirevision=f"steps-{run_id}"), True
        if progress.get("batch_losses"):
            return batch_loss_figure(progress["batch_losses"], epoch=progress.get("epoch"),
                                     uirevision=f"batch-{run_id}"), True
    return curves_figure(frames, "loss", uirevision=run_id), False


def one_pass_accuracy(frames: dict, progress: dict) -> None:
    """A one-epoch run's accuracy as numbers, large: a per-epoch chart of it would be one dot."""
    if progress:
        st.metric("Accuracy on the training images so far", percent_text(progress.get("accuracy")),
                  help="Averaged over the batches of this pass (Keras' running accuracy)")
        st.metric("Batches done", f"{progress.get('batch') or 0:,} of {progress.get('batches') or '?'}")
        return
    frame = frames[variant]
    last = frame.iloc[-1] if len(frame) else {}
    st.metric("Test accuracy", percent_text(summary.test_accuracy),
              help="Share of the 10,000 test images, which it never trained on, that it classifies correctly")
    st.metric("Accuracy on the training images, during its pass", percent_text(last.get("accuracy")),
              help="Averaged over the pass, while the model was still learning: so usually below the test accuracy")
    if np.isfinite(float(last.get("val_accuracy", np.nan))):
        st.metric("Validation accuracy", percent_text(last.get("val_accuracy")))


def draw_curves(live: bool) -> None:
    if live:
        state.keep_live_refresh_in_budget(slides.LIVE_REFRESH_SECONDS)
    frames = {variant: state.metrics_frame(run_id)}
    # From memory when this server trains it, else from its progress file (the CLI, another server).
    progress = state.job_manager().progress(run_id) if live and summary.state in ACTIVE_STATES else {}
    loss, per_batch = loss_figure(frames, progress)
    left, right = st.columns([3, 2], gap="large", vertical_alignment="center") if per_batch else st.columns(2)
    with left:
        chart(slides.projector(loss, slides.HALF_CHART_HEIGHT), "slide_loss")
    with right:
        if per_batch:
            one_pass_accuracy(frames, progress)
        else:
            chart(slides.projector(curves_figure(frames, "accuracy", uirevision=run_id), slides.HALF_CHART_HEIGHT),
                  "slide_accuracy")
    if progress:
        st.markdown(f"**Live:** {progress.get('phase', 'training')}, epoch {progress.get('epoch')} of "
                    f"{progress.get('epochs')}, batch {progress.get('batch')} of {progress.get('batches')}.")
    elif not live:
        st.markdown(BATCH_CURVES_NOTE if per_batch else EPOCH_CURVES_NOTE)


def curves_slide() -> None:
    if not need_run():
        return
    if summary.state in ACTIVE_STATES or run_id == active:
        st.fragment(run_every=state.live_refresh_seconds(slides.LIVE_REFRESH_SECONDS))(draw_curves)(live=True)
    else:
        draw_curves(live=False)


def confusion_slide() -> None:
    evaluation = need_predictions()
    if evaluation is None:
        return
    left, right = st.columns([3, 2], gap="large")
    with left:
        fig = confusion_figure(evaluation.confusion, selectable=False)
        chart(slides.projector(fig, slides.CHART_HEIGHT), "slide_confusion")
    with right:
        st.metric("Correct", f"{100 * evaluation.top1_accuracy:.1f}%",
                  help=f"of {evaluation.n:,} test images")
        pairs = evaluation.confused_pairs.head(4)
        if pairs.empty:
            st.markdown("No mistakes at all.")
        else:
            st.markdown("**Most confused:**\n\n" + "\n".join(
                f"- {r.true} → {r.predicted}: **{r.count:,}**" for r in pairs.itertuples()))
        st.markdown("Rows: the true class. Columns: the model's answer. The diagonal is right.")


def mistakes_slide() -> None:
    evaluation = need_predictions()
    if evaluation is None:
        return
    y_true, y_prob = state.predictions(run_id)
    images = test_images_for(len(y_true))
    if images is None:
        return
    top = mistakes(y_true, y_prob).head(slides.MISTAKES_ON_SLIDE)
    if top.empty:
        st.markdown("No mistakes at all on this test set.")
        return
    per_row = slides.MISTAKES_ON_SLIDE // 2
    for start in range(0, len(top), per_row):
        cols = st.columns(per_row)
        for col, (_, row) in zip(cols, top.iloc[start:start + per_row].iterrows()):
            col.image(upscale(images[int(row["index"])], IMAGE_SIDE, "nearest"), output_format="PNG", width=IMAGE_SIDE,
                      caption=caption(row["true"], row["predicted"], row["confidence"]))


def saliency_slide() -> None:
    evaluation = need_predictions()
    if evaluation is None:
        return
    y_true, y_prob = state.predictions(run_id)
    images = test_images_for(len(y_true))
    if images is None:
        return
    top = mistakes(y_true, y_prob).head(slides.SALIENCY_ON_SLIDE)
    if top.empty:
        st.markdown("No mistakes to explain.")
        return
    cols = st.columns(len(top))
    with st.spinner("Asking the model where it looked ..."):
        for col, (_, row) in zip(cols, top.iterrows()):
            image = images[int(row["index"])]
            answer = model_answers.ask_model(run_id, image, int(row["predicted_index"]))
            col.image(upscale(image, IMAGE_SIDE, "nearest"), output_format="PNG", width=IMAGE_SIDE,
                      caption=f"true: {row['true']}")
            if answer is None:
                col.markdown("(no checkpoint)")
                continue
            col.image(overlay_heatmap(image, answer.heatmap, 0.55, IMAGE_SIDE, "nearest"), output_format="PNG",
                      width=IMAGE_SIDE, caption=f"looked for “{row['predicted']}” here")
    method = "Grad-CAM" if answer is not None and answer.method == "grad-cam" else "SmoothGrad"
    st.markdown(f"Bright: the regions that pushed the model towards its (wrong) answer ({method}).")


def board_slide() -> None:
    board = class_board(summaries, state.epoch_seconds(summaries))
    if not board.points:
        st.markdown("No run has a test accuracy yet: each one that completes becomes a point here.")
        return
    fig = board_figure(board, title="Test accuracy against minutes of training, a point per run")
    chart(slides.projector(fig, slides.CHART_HEIGHT - 20), "slide_board")
    st.markdown("Black steps: the runs nobody beat on both accuracy and minutes. Hover for names.")


def sweep_slide() -> None:
    sweeps = list_sweeps(state.store())
    names = [s.name for s in sweeps]
    of_run = [s.name for s in sweeps if run_id and run_id in trial_run_ids(s)]
    shown = slides.sweep_shown(names, st.query_params.get(nav.SWEEP_PARAM), of_run)
    if shown is None:
        st.markdown("No sweeps yet: set one up on the **Sweep** page, and its trials show here as they finish.")
        return
    left, right = st.columns([5, 2], gap="large")
    with right:
        shown = st.selectbox("Sweep", names, index=names.index(shown), key="present_sweep")
        st.query_params[nav.SWEEP_PARAM] = shown
        sweep = next(s for s in sweeps if s.name == shown)
        trials = sweep_results.trial_results(sweep)
        done = [t for t in trials if t.state in sweep_charts.FINISHED_STATES]
        st.metric("Trials finished", f"{len(done)} of {sweep.spec.trial_budget() or len(trials)}",
                  help=f"{sum(t.state == 'pruned' for t in done)} of them pruned")
        scores = sweep_results.importances(sweep)
        if scores:
            st.markdown(sweep_results.importance_sentence(sweep, scores, trials))
    with left:
        if not done:
            st.markdown("No trial has finished yet: each one draws a line here when it does.")
            return
        spec = sweep.spec
        frame = sweep_charts.trials_frame(trials, [p.name for p in spec.params])
        axes = {p.name: (sweep_results.setting_label(p.name), p.distribution == "log_uniform_values")
                for p in spec.params}
        fig = sweep_charts.parallel_coordinates(frame, axes, sweep_results.METRIC_WORDS[spec.metric])
        chart(slides.projector(fig, slides.CHART_HEIGHT), "slide_sweep")


RENDER = {"title": title_slide, "history": history_slide, "scaling": scaling_slide, "config": config_slide,
          "curves": curves_slide, "confusion": confusion_slide, "mistakes": mistakes_slide,
          "saliency": saliency_slide, "board": board_slide, "sweep": sweep_slide}
with slide_area:
    RENDER[slide.key]()
