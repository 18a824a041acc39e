"""Misclassified images: a filterable, paged gallery of a run's mistakes (or, for contrast, of
what it got right), and a detail view with top-5 probabilities and a saliency map.

The filters live in the URL (?run=…&true=cat&pred=dog&view=mistakes&image=123), so the
confusion page links here and any view can be shared.
"""

from __future__ import annotations

import io

import numpy as np
import streamlit as st

from core.analysis.evaluate import correct_examples, mistakes, top_k
from core.data.cifar10 import CLASS_NAMES, DataError
from dashboard import model_answers, nav, state
from dashboard.images import (PER_PAGE_CHOICES, caption, grid_rows, heat_image, overlay_heatmap, page_bounds,
                              page_count, upscale)
from dashboard.result_charts import top5_figure
from dashboard.url_state import (IMAGE_PARAM, PRED_PARAM, TRUE_PARAM, VIEW_PARAM, VIEWS, int_param, page_number,
                                 set_param, to_url, url_backed)

SALIENCY_METHODS = {"Grad-CAM": "grad-cam", "SmoothGrad": "smoothgrad"}   # label -> core.analysis.saliency method

ANY = "any"
COLUMNS = 6
THUMB_SIZES = {"small": 80, "medium": 112, "large": 160}
DETAIL_SIZE = 256
SORTS = {"confidence": "most confident mistakes first", "loss": "highest loss first"}


@st.cache_data(max_entries=4096, show_spinner=False)
def thumbnail_png(pixels: bytes, shape: tuple[int, int, int], size: int, method: str) -> bytes:
    """PNG of one upscaled test image, keyed by its pixels (3 KB), size and method."""
    image = np.frombuffer(pixels, dtype=np.uint8).reshape(shape)
    buffer = io.BytesIO()
    upscale(image, size, method).save(buffer, format="PNG")
    return buffer.getvalue()


def close_detail() -> None:
    set_param(IMAGE_PARAM, None)


def open_detail(index: int) -> None:
    set_param(IMAGE_PARAM, str(index))


# --- page ------------------------------------------------------------------------------------
st.title("Misclassified images")
summaries = state.run_summaries()
if not summaries:
    st.info("No runs yet. Train one first, then come back to see what it gets wrong.")
    st.stop()
run_id = state.select_run([s.run_id for s in summaries],
                          labels={s.run_id: state.run_label(s) for s in summaries})
predictions = state.predictions(run_id)
if predictions is None:
    st.info(f"Run {run_id} has no test-set predictions yet. A finished run writes them at the end; "
            "for a running or stopped run, use “Evaluate now” on the confusion page.")
    st.page_link(nav.page("confusion"), label="Open the confusion page")
    st.stop()
y_true, y_prob = predictions
try:
    images = state.test_images()
except DataError as exc:
    st.error(f"The CIFAR-10 test images cannot be loaded, so there is nothing to show. {exc} "
             "Set EFFLAB_DATA_DIR to the folder that holds cifar-10-batches-py (or the "
             "cifar-10-python.tar.gz archive) and restart the dashboard.")
    st.stop()
if len(images) != len(y_true):
    st.error(f"This run's predictions cover {len(y_true):,} images but the test set here has "
             f"{len(images):,}: the run was evaluated on other data. Point EFFLAB_DATA_DIR at the "
             "data it was trained with, or evaluate it again.")
    st.stop()

# Filters, seeded from the URL.
names = list(CLASS_NAMES)
url_backed("gallery_view", VIEW_PARAM, list(VIEWS), "mistakes")
url_backed("gallery_true", TRUE_PARAM, [ANY, *names], ANY)
url_backed("gallery_pred", PRED_PARAM, [ANY, *names], ANY)
row1 = st.columns([2, 2, 2, 3])
view = row1[0].radio("Show", list(VIEWS), key="gallery_view", horizontal=True,
                     format_func=lambda v: {"mistakes": "mistakes", "correct": "correct (contrast)"}[v])
if view == "correct" and st.session_state["gallery_true"] == ANY:
    st.session_state["gallery_true"] = names[int(np.bincount(y_true, minlength=len(names)).argmax())]
true_name = row1[1].selectbox("True class", [ANY, *names] if view == "mistakes" else names,
                              key="gallery_true")
pred_name = row1[2].selectbox("Predicted as", [ANY, *names], key="gallery_pred",
                              disabled=view == "correct",
                              help="Correct images are predicted as their own class."
                              if view == "correct" else None)
sort = row1[3].radio("Order", list(SORTS), key="gallery_sort", horizontal=True,
                     format_func=lambda s: SORTS[s] if view == "mistakes" else
                     {"confidence": "most confident first", "loss": "least sure first"}[s])
to_url("gallery_view", VIEW_PARAM, view, "mistakes")
to_url("gallery_true", TRUE_PARAM, true_name, ANY)
to_url("gallery_pred", PRED_PARAM, pred_name if view == "mistakes" else None, ANY)

row2 = st.columns([2, 2, 2, 3])
per_page = row2[0].selectbox("Per page", PER_PAGE_CHOICES, index=1, key="gallery_per_page")
size_name = row2[1].radio("Size", list(THUMB_SIZES), index=1, key="gallery_size", horizontal=True)
method = row2[2].radio("Upscaling", ["nearest", "smooth"], key="gallery_method", horizontal=True,
                       help="nearest: each of the 32×32 pixels as a crisp square (what the model saw); "
                            "smooth: Lanczos, easier on the eye but it invents detail.")

true_index = names.index(true_name) if true_name != ANY else None
pred_index = names.index(pred_name) if pred_name != ANY and view == "mistakes" else None
if view == "mistakes":
    frame = mistakes(y_true, y_prob, true_class=true_index, predicted_class=pred_index, sort=sort)
else:
    frame = correct_examples(y_true, y_prob, true_class=true_index, sort=sort)

pages = page_count(len(frame), per_page)
page_number("gallery_page", (run_id, view, true_name, pred_name, sort, per_page), pages)
page = row2[3].number_input(f"Page (of {pages})", min_value=1, max_value=pages, step=1, key="gallery_page")


# Detail view of one image, when the URL names one.
def saliency_panel(index: int, image: np.ndarray, predicted: int, true: int) -> None:
    """What the run's latest checkpoint looked at (the Try-image page's saliency, one cache for both)."""
    controls = st.columns(2)
    method_label = controls[0].radio("Saliency", list(SALIENCY_METHODS), key="detail_method")
    explain_class = controls[1].radio(
        "Evidence for", [predicted, true] if predicted != true else [predicted], key="detail_class",
        format_func=lambda c: f"{names[c]} ({'predicted' if c == predicted else 'true'})")
    alpha = st.slider("Heat-map opacity", 0.0, 1.0, 0.5, 0.05, key="detail_alpha")
    try:
        answer = model_answers.ask_model(run_id, image, int(explain_class), SALIENCY_METHODS[method_label])
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint is a message, never a traceback
        st.error(f"The saliency map could not be computed: {type(exc).__name__}: {exc}")
        return
    if answer is None:
        st.info("This run has no checkpoint, so there is no model to explain.")
        return
    st.image(overlay_heatmap(image, answer.heatmap, alpha, DETAIL_SIZE, method), output_format="PNG",
             caption=f"What the model looked at for “{names[int(explain_class)]}”")
    st.image(heat_image(answer.heatmap, 96), width=96, output_format="PNG",
             caption="Heat alone (yellow = most)")
    model_pred = int(np.argmax(answer.probabilities))
    changed = ("" if model_pred == predicted else
               f", which now predicts {names[model_pred]} for this image (the stored predictions "
               "came from an earlier checkpoint)")
    st.caption(f"{answer.description}. Model: the run's latest checkpoint{changed}.")


def detail_view(index: int) -> None:
    """One test image: large, its top-5 probabilities, and what the model looked at."""
    true, probs = int(y_true[index]), y_prob[index].astype(np.float64)
    predicted = int(np.argmax(probs))
    image = images[index]
    with st.container(border=True):
        head = st.columns([6, 1])
        verdict = "✅ correct" if predicted == true else "❌ wrong"
        head[0].subheader(f"Test image #{index}: "
                          f"{caption(names[true], names[predicted], probs[predicted])} {verdict}")
        head[1].button("Close", key="detail_close", on_click=close_detail)
        cols = st.columns([1, 1, 2])
        cols[0].image(upscale(image, DETAIL_SIZE, method), output_format="PNG",
                      caption=f"{method} upscaling of the 32×32 original")
        with cols[2]:
            st.plotly_chart(top5_figure(top_k(probs, 5), true_index=true,
                                        title=f"Top-5 probabilities, image #{index}"),
                            key="detail_top5", config={"displayModeBar": False}, theme=None)
        with cols[1]:
            saliency_panel(index, image, predicted, true)


wanted_image = int_param(IMAGE_PARAM, 0, len(images) - 1)    # refused with a warning unless in range
if wanted_image is not None:
    detail_view(wanted_image)

# The gallery.
what = "misclassified" if view == "mistakes" else "correctly classified"
subject = f"{true_name} images" if true_name != ANY else "images"
target = f" predicted as {pred_name}" if pred_index is not None else ""
st.markdown(f"**{len(frame):,} {what} {subject}{target}** of {len(y_true):,} test images"
            + (f" · page {min(page, pages)} of {pages}" if len(frame) else ""))
if frame.empty:
    st.info("No images match these filters." if view == "mistakes" else
            f"The model got none of the {true_name} images right.")
else:
    start, stop = page_bounds(page, per_page, len(frame))
    shown = frame.iloc[start:stop]
    size = THUMB_SIZES[size_name]
    for positions in grid_rows(len(shown), COLUMNS):
        cols = st.columns(COLUMNS)
        for col, pos in zip(cols, positions):
            item = shown.iloc[pos]
            index = int(item["index"])
            pixels = np.ascontiguousarray(images[index])
            col.image(thumbnail_png(pixels.tobytes(), pixels.shape, size, method),
                      caption=caption(item["true"], item["predicted"], item["confidence"]),
                      # PNG: JPEG would blur the crisp pixels. The width, because without it a
                      # caption wider than the image ("automobile → truck (93%)") stretches it.
                      width=size, output_format="PNG")
            col.button("Inspect", key=f"inspect_{index}", on_click=open_detail, args=(index,),
                       help=f"Test image #{index}: top-5 probabilities and a saliency map")
