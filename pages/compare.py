"""Compare runs: one sentence on top per run saying what it changed against the oldest and what that
did ("B2 instead of B0, same settings: +6.1 points; cat↔dog confusions −40"), then curves overlaid
(per epoch, and per batch where the runs recorded it: first for one-epoch runs), settings side by
side with the differences highlighted, per-class accuracy side by side, and how two runs'
confusions differ ("B2 confuses cat and dog 40 fewer times than B0").

?runs=id1,id2 opens the page on those runs (the same parameter as the curves page).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.analysis.evaluate import compare_confusions
from dashboard import state, url_state
from dashboard.charts import (accuracy_per_batch_figure, curves_figure, loss_per_batch_figure, loss_per_batch_leads,
                              unrecorded_accuracy_note)
from dashboard.compare_charts import (change_sentence, confusion_difference_figure, differing_rows,
                                      highlight_differences, pair_changes, per_class_accuracy_figure,
                                      settings_frame, short_labels)
from dashboard.nav import COMPARE_KEY, COMPARE_PARAM

SENTENCES = 8
SENTENCES_ON_TOP = 3     # one per compared run, against the oldest
CHART_CONFIG = {"displayModeBar": False}

st.title("Compare runs")
summaries = [s for s in state.run_summaries() if not s.damaged]
if len(summaries) < 2:
    st.info("Comparing needs at least two runs. Train another (say, a different variant or learning "
            "rate), then come back.")
    st.stop()

by_id = {s.run_id: s for s in summaries}
from_url = url_state.run_ids_param(COMPARE_PARAM, list(by_id))   # unknown ids: refused, shown as text
default = (st.session_state.pop(COMPARE_KEY, None) or from_url
           or [s.run_id for s in summaries if s.has_predictions][:2] or [s.run_id for s in summaries[:2]])
chosen = st.multiselect("Runs to compare", list(by_id), default=[r for r in default if r in by_id],
                        format_func=lambda rid: state.run_label(by_id[rid]), key="compare_chosen",
                        help="Two or more runs; the first is the baseline for the confusion difference.")
st.query_params[COMPARE_PARAM] = ",".join(chosen)
if len(chosen) < 2:
    st.info("Choose at least two runs.")
    st.stop()

labels = short_labels({rid: by_id[rid].variant for rid in chosen}, {rid: by_id[rid].name for rid in chosen})


# --- in one sentence: what each run changed against the oldest, and what that did ---------------------
def _scored(rid: str):
    """(test accuracy, confusion matrix) from the run's predictions when it has them."""
    evaluation = state.evaluation(rid) if by_id[rid].has_predictions else None
    if evaluation is None:
        return by_id[rid].test_accuracy, None
    return evaluation.top1_accuracy, evaluation.confusion


oldest = sorted(chosen)[0]        # the baseline, as in the confusion difference below
for rid in [r for r in chosen if r != oldest][:SENTENCES_ON_TOP]:
    (accuracy_a, confusion_a), (accuracy_b, confusion_b) = _scored(oldest), _scored(rid)
    sentence = change_sentence(labels[oldest], labels[rid], by_id[oldest].config, by_id[rid].config,
                               accuracy_a, accuracy_b, confusion_a, confusion_b)
    st.markdown(f"**{state.markdown_text(sentence)}**")

# --- curves -------------------------------------------------------------------------------------------
st.subheader("Curves", anchor=False)
frames = {labels[rid]: state.metrics_frame(rid) for rid in chosen}
batch_history = {labels[rid]: state.batch_losses(rid) for rid in chosen}   # {} for runs from before batches.csv
batch_accuracies = {labels[rid]: state.batch_accuracies(rid) for rid in chosen}   # {} before it was recorded
revision = "|".join(chosen)


def draw_loss_per_batch() -> None:
    """Loss and accuracy per batch side by side, as the epoch charts; the loss alone, full width,
    when no run recorded its accuracy per batch."""
    loss = loss_per_batch_figure(batch_history, uirevision=f"steps-{revision}")
    if not any(batch_accuracies.values()):
        st.plotly_chart(loss, key="compare_loss_per_batch", config=CHART_CONFIG, theme=None)
        return
    left, right = st.columns(2)
    left.plotly_chart(loss, key="compare_loss_per_batch", config=CHART_CONFIG, theme=None)
    right.plotly_chart(accuracy_per_batch_figure(batch_accuracies, uirevision=f"steps-accuracy-{revision}"),
                       key="compare_accuracy_per_batch", config=CHART_CONFIG, theme=None)
    note = unrecorded_accuracy_note(batch_history, batch_accuracies)
    if note:
        right.caption(state.markdown_text(note))


with_batches = any(batch_history.values())
batches_first = with_batches and loss_per_batch_leads(by_id[rid].epochs for rid in chosen)
if batches_first:
    draw_loss_per_batch()
left, right = st.columns(2)
left.plotly_chart(curves_figure(frames, "loss", uirevision=revision), key="compare_loss",
                  config=CHART_CONFIG, theme=None)
right.plotly_chart(curves_figure(frames, "accuracy", uirevision=revision), key="compare_accuracy",
                   config=CHART_CONFIG, theme=None)
if with_batches and not batches_first:
    draw_loss_per_batch()

# --- settings -----------------------------------------------------------------------------------------
st.subheader("Settings", anchor=False)
results = pd.DataFrame({labels[rid]: [
    "—" if by_id[rid].test_accuracy is None else f"{100 * by_id[rid].test_accuracy:.1f}%",
    "—" if by_id[rid].best_val_accuracy is None else f"{100 * by_id[rid].best_val_accuracy:.1f}%",
    f"{by_id[rid].epochs_done} of {by_id[rid].epochs}", by_id[rid].state,
    "—" if by_id[rid].duration_seconds is None else f"{by_id[rid].duration_seconds / 60:.1f} min",
    rid] for rid in chosen}, index=pd.Index(["test accuracy", "best validation accuracy", "epochs",
                                             "state", "training time", "run id"], name="result"))
settings = settings_frame({labels[rid]: by_id[rid].config for rid in chosen})
different = differing_rows(settings)
only_different = st.toggle("Only the settings that differ", key="compare_only_different",
                           value=bool(different.any()))
shown = settings[different] if only_different else settings
st.dataframe(results, width="stretch")
if shown.empty:
    st.success("These runs have exactly the same settings: any difference in their results is chance "
               "(random initialisation, shuffling, augmentation).")
else:
    st.dataframe(highlight_differences(shown), width="stretch", height=min(38 + 35 * len(shown), 720))
st.caption(f"{int(different.sum())} of {len(settings)} settings differ (highlighted).")

# --- per class ----------------------------------------------------------------------------------------
evaluated = [rid for rid in chosen if by_id[rid].has_predictions]
evaluations = {rid: state.evaluation(rid) for rid in evaluated}
evaluations = {rid: ev for rid, ev in evaluations.items() if ev is not None}
st.subheader("Accuracy per class", anchor=False)
missing = [labels[rid] for rid in chosen if rid not in evaluations]
if missing:
    st.caption("No test-set predictions for " + ", ".join(missing) + " (they are written when a run "
               "finishes, or with “Evaluate now” on the confusion page).")
if not evaluations:
    st.info("None of these runs has test-set predictions yet.")
    st.stop()
st.plotly_chart(per_class_accuracy_figure({labels[rid]: ev.per_class for rid, ev in evaluations.items()}),
                key="compare_per_class", config=CHART_CONFIG, theme=None)

# --- confusion difference -----------------------------------------------------------------------------
st.subheader("How their mistakes differ", anchor=False)
if len(evaluations) < 2:
    st.info("The confusion difference needs two runs with test-set predictions.")
    st.stop()
ids = sorted(evaluations)          # oldest first: the baseline is the earlier run
pick = st.columns([2, 2, 3])
base = pick[0].selectbox("Baseline", ids, index=0, format_func=labels.get, key="compare_base")
other = pick[1].selectbox("Compared with", [rid for rid in ids if rid != base], index=0,
                          format_func=labels.get, key="compare_other")
scale = pick[2].radio("Cells show", ["test images", "% of the true class"], horizontal=True,
                      key="compare_scale")
a, b = evaluations[base], evaluations[other]
if a.n != b.n:
    st.warning(f"{labels[base]} was tested on {a.n:,} images and {labels[other]} on {b.n:,}: compare "
               "them as “% of the true class”.")
st.plotly_chart(confusion_difference_figure(a.confusion, b.confusion, labels[base], labels[other],
                                            normalise=scale != "test images"),
                key="compare_confusion", config=CHART_CONFIG, theme=None)
pairs = pair_changes(a.confusion, b.confusion, labels[base], labels[other])
if pairs.empty:
    st.success(f"{labels[other]} and {labels[base]} confuse every pair of classes equally often.")
else:
    st.markdown("\n".join(f"- {sentence}" for sentence in pairs["sentence"].head(SENTENCES)))
    with st.expander("Every change, one direction at a time"):
        directed = compare_confusions(a.confusion, b.confusion, label_a=labels[base], label_b=labels[other])
        st.dataframe(directed[["sentence", "count_a", "count_b", "change"]], hide_index=True, width="stretch",
                     column_config={"count_a": labels[base], "count_b": labels[other]})
