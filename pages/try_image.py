"""Try your own image: a photo (or a random test image) shown to a finished run's model, with its
top-5 answers and where it looked.

The photo is prepared as CIFAR-10's images were: centre-cropped to a square and shrunk to 32×32
(core.analysis.predict_image), then resized to the model's input exactly as the test images are. The page
shows that 32×32 image, so nobody is surprised that a detailed photo becomes a few blocks.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.analysis.evaluate import top_k
from core.analysis.predict_image import CIFAR_SIDE, MAX_DECODED_BYTES, MAX_PIXELS
from core.data.cifar10 import CLASS_NAMES, DataError
from dashboard import model_answers, nav, state
from dashboard.images import overlay_heatmap, upscale
from dashboard.result_charts import top5_figure

SHOW_SIDE = 256
SOURCES = {"upload": "Upload a photo", "test": "A random CIFAR-10 test image"}
RANDOM_KEY = "try_random_index"
UNSURE_BELOW = 0.5          # a top answer under this probability is called a guess


def pick_random(n: int) -> None:
    st.session_state[RANDOM_KEY] = int(np.random.default_rng().integers(n))


st.title("Try your own image")
st.markdown("Show a trained model a photo of your own. It only knows CIFAR-10's ten classes ("
            + ", ".join(CLASS_NAMES) + "), so it answers with one of them whatever the photo shows.")

runs = state.finished_with_model(state.run_summaries())
if not runs:
    st.info("There is no finished run with a saved model yet. Train one first (the Quick demo preset "
            "takes a few minutes on a laptop), then come back.")
    st.page_link(nav.page("train"), label="Go to Train", icon=":material/model_training:")
    st.stop()

top = st.columns([3, 2])
with top[0]:
    run_id = state.select_run([s.run_id for s in runs], label="Model (a finished run)", key="try_run",
                              labels={s.run_id: state.run_label(s) for s in runs}, sidebar=False)
with top[1]:
    source = st.radio("Image", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="try_source")

max_mb = int(st.get_option("server.maxUploadSize") or 10)
truth: int | None = None
if source == "upload":
    upload = st.file_uploader(
        "Your photo (PNG or JPEG)", type=["png", "jpg", "jpeg"], key="try_upload",
        help=f"PNG or JPEG, up to {max_mb} MB and {MAX_PIXELS / 1e6:.0f} megapixels (a PNG: up to "
             f"{MAX_DECODED_BYTES // 4 / 1e6:.0f} megapixels in colour, as it cannot be decoded smaller). "
             "Put the object in the middle: the model sees the centre square.")
    if upload is None:
        st.info("Drop a photo here: a cat, a dog, a car, a ship ... The object should fill the middle of "
                "the picture, as in CIFAR-10's photos.")
        st.stop()
    photo = model_answers.photo_or_stop(upload, max_mb)
    pixels, shown = photo.pixels, photo.square
    what = (f"{upload.name}: {photo.format}, {photo.size[0]:,} × {photo.size[1]:,} px"
            + ("; " + "; ".join(photo.notes) if photo.notes else ""))
else:
    try:
        images = state.test_images()
    except DataError as exc:
        st.error(f"The CIFAR-10 test images cannot be loaded here. {exc}")
        st.stop()
    if RANDOM_KEY not in st.session_state or st.session_state[RANDOM_KEY] >= len(images):
        pick_random(len(images))
    st.button("Pick another", key="try_another", icon=":material/casino:", on_click=pick_random,
              args=(len(images),))
    index = st.session_state[RANDOM_KEY]
    pixels = images[index]
    shown = upscale(pixels, SHOW_SIDE, "smooth")
    predictions = state.predictions(run_id)
    if predictions is not None and len(predictions[0]) == len(images):
        truth = int(predictions[0][index])
    what = f"CIFAR-10 test image #{index}" + (f", a {CLASS_NAMES[truth]}" if truth is not None else "")

with st.spinner("Asking the model ..."):
    try:
        answer = model_answers.ask_model(run_id, pixels)
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint is a message, never a traceback
        st.error(f"The model could not be run: {type(exc).__name__}: {exc}")
        st.stop()
if answer is None:
    st.error("This run's checkpoint is gone; pick another run.")
    st.stop()

ranked = top_k(answer.probabilities, 5)
best, confidence = ranked[0]
verdict = f"The model says: **{CLASS_NAMES[best]}** ({100 * confidence:.0f}%)"
if truth is not None:
    verdict += " ✅ right" if best == truth else f" ❌ it is a {CLASS_NAMES[truth]}"
elif confidence < UNSURE_BELOW:
    verdict += " — a guess: no class gets half the probability"
st.subheader(verdict, anchor=False)

cols = st.columns([1, 1, 1, 1.7], gap="small")
cols[0].image(shown.resize((SHOW_SIDE, SHOW_SIDE)) if shown.size != (SHOW_SIDE, SHOW_SIDE) else shown,
              width="stretch", caption="The picture (centre square)" if source == "upload" else "The test image")
cols[1].image(upscale(pixels, SHOW_SIDE, "nearest"), width="stretch", output_format="PNG",
              caption=f"What the model sees: {CIFAR_SIDE}×{CIFAR_SIDE} pixels")
cols[2].image(overlay_heatmap(pixels, answer.heatmap, 0.5, SHOW_SIDE, "nearest"), width="stretch",
              output_format="PNG", caption=f"Where it looked for “{CLASS_NAMES[best]}”")
with cols[3]:
    st.plotly_chart(top5_figure(ranked, true_index=truth, title="Top-5 answers"), key="try_top5",
                    config={"displayModeBar": False}, theme=None)

resize = ("" if answer.input_side == CIFAR_SIDE else
          f", then resized bilinearly to the model's {answer.input_side}×{answer.input_side} input")
st.caption(f"{what}. Prepared as CIFAR-10's photos were: cropped to the centre square and shrunk to "
           f"{CIFAR_SIDE}×{CIFAR_SIDE} pixels by averaging{resize}, exactly as the training and test images "
           f"are fed to the model. Saliency: {answer.description}. Model: the run's latest checkpoint.")
