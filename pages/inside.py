"""Inside the network: one image through a finished run's EfficientNet, stage by stage.

A test image (by number, or ?image=N from a link such as the gallery's), one of the run's
mistakes, or an uploaded photo goes through the model once (core.analysis.inside, cached per checkpoint
and image); the page shows the input as the network sees it, the most active channels of the
stem, each of the seven blocks and the top convolution as small heat maps with their sizes, the
pooled vector and the probabilities, and next to it all the lesson: the feature-map size per
stage at the run's resolution and at the variant's native one.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.analysis.evaluate import mistakes
from core.analysis.inside import feature_map_sizes, first_block_at_1x1
from core.data.cifar10 import CLASS_NAMES, DataError
from core.settings.variants import get_variant
from dashboard import model_answers, nav, state
from dashboard.images import upscale
from dashboard.inside_charts import channel_grid_figure, map_sizes_figure, pooled_figure, probabilities_figure
from dashboard.url_state import IMAGE_PARAM, parse_int

SHOW_SIDE = 224
SOURCES = {"test": "A test image (by number)", "mistake": "One of the run's mistakes", "upload": "Upload a photo"}
SOURCE_KEY, INDEX_KEY, SEEN_PARAM_KEY = "inside_source", "inside_index", "_inside_url_image"
MISTAKES_LISTED = 50


@st.cache_data(max_entries=64, show_spinner=False)
def forward_pass(checkpoint: str, checkpoint_time: float, pixels: bytes, shape: tuple[int, ...], _model):
    """core.analysis.inside.look_inside, once per (checkpoint file and time, image bytes)."""
    from core.analysis.inside import look_inside
    return look_inside(_model, np.frombuffer(pixels, dtype=np.uint8).reshape(shape))


def image_from_url(count: int) -> None:
    """?image=N (a link from the gallery) selects test image N once, when the link brings it."""
    wanted = st.query_params.get(IMAGE_PARAM)
    if wanted is None or wanted == st.session_state.get(SEEN_PARAM_KEY):
        return
    st.session_state[SEEN_PARAM_KEY] = wanted
    if (number := parse_int(wanted, 0, count - 1)) is not None:    # "²".isdigit(), but int("²") fails
        st.session_state[SOURCE_KEY], st.session_state[INDEX_KEY] = "test", number
    else:
        st.warning(f"image must be a test image number from 0 to {count - 1:,}; got "
                   f"`{state.shown_text(wanted)}`. Showing another image instead.")


def pick_image(run_id: str):
    """(uint8 32×32×3 pixels, picture to show, words about it, true class or None); stops the page
    with a message when there is nothing usable."""
    try:
        images = state.test_images()
    except DataError as exc:
        images = None
        st.warning(f"The CIFAR-10 test images cannot be loaded here, so only uploads work. {exc}")
    if images is not None:
        image_from_url(len(images))
    source = st.radio("Image", list(SOURCES), format_func=SOURCES.get, horizontal=True, key=SOURCE_KEY)
    if source == "upload" or images is None:
        return uploaded_image()
    predictions = state.predictions(run_id)
    y_true = predictions[0] if predictions is not None and len(predictions[0]) == len(images) else None
    if source == "mistake":
        if y_true is None:
            st.info("This run has no test-set predictions, so its mistakes are not known; pick a test image "
                    "by number instead.")
            st.stop()
        wrong = mistakes(*predictions).head(MISTAKES_LISTED)
        if wrong.empty:
            st.info("This run made no mistakes on the test set.")
            st.stop()
        labels = {int(r["index"]): f"#{int(r['index'])}: a {r['true']} taken for a {r['predicted']} "
                  f"({100 * r['confidence']:.0f}%)" for _, r in wrong.iterrows()}
        index = st.selectbox(f"The {len(labels)} most confident mistakes", list(labels),
                             format_func=labels.get, key="inside_mistake")
    else:
        index = st.number_input(f"Test image number (0–{len(images) - 1:,})", min_value=0,
                                max_value=len(images) - 1, step=1, key=INDEX_KEY)
    index = int(index)
    st.query_params[IMAGE_PARAM] = str(index)
    st.session_state[SEEN_PARAM_KEY] = str(index)
    truth = None if y_true is None else int(y_true[index])
    pixels = images[index]
    words = f"CIFAR-10 test image #{index}" + (f", a {CLASS_NAMES[truth]}" if truth is not None else "")
    return pixels, upscale(pixels, SHOW_SIDE, "smooth"), words, truth


def uploaded_image():
    max_mb = int(st.get_option("server.maxUploadSize") or 10)
    upload = st.file_uploader("Your photo (PNG or JPEG)", type=["png", "jpg", "jpeg"], key="inside_upload",
                              help=f"PNG or JPEG, up to {max_mb} MB. It is cropped to its centre square and "
                                   "shrunk to 32×32, as CIFAR-10's photos were.")
    if upload is None:
        st.info("Drop a photo here, or pick a test image above.")
        st.stop()
    photo = model_answers.photo_or_stop(upload, max_mb)
    return photo.pixels, photo.square.resize((SHOW_SIDE, SHOW_SIDE)), f"{upload.name} (centre square)", None


def lesson(config) -> None:
    """Map size per stage at the run's input size next to the variant's native size."""
    variant = get_variant(config.variant)
    run_sizes = feature_map_sizes(config.image_size, config.variant)
    native_sizes = feature_map_sizes(variant.resolution, config.variant)
    st.plotly_chart(map_sizes_figure(run_sizes, native_sizes, run_side=config.image_size,
                                     native_side=variant.resolution, variant=config.variant),
                    key="inside_sizes", config={"displayModeBar": False}, theme=None)
    one = first_block_at_1x1(config.image_size, config.variant)
    last = run_sizes[-1].side
    if one is not None:
        st.markdown(f"At **{config.image_size} px** this run's feature maps are **1×1 from block {one} on**: "
                    f"from there each channel is a single number, so the later blocks can no longer say *where* "
                    f"anything is. {variant.label} was designed for {variant.resolution} px, where the last map "
                    f"is still {native_sizes[-1].side}×{native_sizes[-1].side}. That is why compound scaling "
                    "grows the resolution together with depth and width.")
    else:
        st.markdown(f"At **{config.image_size} px** the last feature map is still {last}×{last}: the blocks "
                    f"keep a sense of *where*. {variant.label}'s native size is {variant.resolution} px "
                    f"({native_sizes[-1].side}×{native_sizes[-1].side} at the end).")


st.title("Inside the network")
st.markdown("Follow one picture through a trained EfficientNet. Each stage turns the image into many "
            "*channels*, small maps that light up where the stage found its pattern; strides halve the maps "
            "while the channels multiply. Shown per stage: the most active channels (bright = strong).")

runs = state.finished_with_model(state.run_summaries())
if not runs:
    st.info("There is no finished run with a saved model yet. Train one first (the Quick demo preset takes a "
            "few minutes on a laptop), then come back.")
    st.page_link(nav.page("train"), label="Go to Train", icon=":material/model_training:")
    st.stop()

run_id = state.select_run([s.run_id for s in runs], label="Model (a finished run)", key="inside_run",
                          labels={s.run_id: state.run_label(s) for s in runs}, sidebar=False)
run = state.get_run(run_id)
try:
    config = run.read_config()
except (OSError, ValueError) as exc:
    st.error(f"This run's settings cannot be read ({exc}); pick another run.")
    st.stop()
pixels, picture, words, truth = pick_image(run_id)

key = model_answers.checkpoint_key(run_id)
model = state.load_model(run_id) if key else None
if model is None:
    st.error("This run's checkpoint is gone; pick another run.")
    st.stop()
pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
with st.spinner("One forward pass through the network ..."):
    try:
        inside = forward_pass(key[0], key[1], pixels.tobytes(), pixels.shape, model)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign checkpoint is a message, not a traceback
        st.error(f"The model could not be run: {type(exc).__name__}: {exc}")
        st.stop()

side = inside.image.shape[0]
cols = st.columns([1, 1, 2])
cols[0].image(picture, caption=words, width="stretch")
cols[1].image(upscale((inside.image * 255).round().astype(np.uint8), SHOW_SIDE, "nearest"), output_format="PNG",
              width="stretch", caption=f"What the first convolution receives: {side}×{side} × 3 "
              f"(values {inside.input_range[0]:.2f} to {inside.input_range[1]:.2f}, stretched for display)")
with cols[2]:
    st.plotly_chart(probabilities_figure(inside.probabilities, true_index=truth), key="inside_probs",
                    config={"displayModeBar": False}, theme=None)

st.subheader("Why the resolution matters", anchor=False)
lesson(config)

st.subheader("Stage by stage", anchor=False)
for stage in inside.stages:
    if stage.is_map:
        st.plotly_chart(channel_grid_figure(stage), key=f"inside_{stage.key}",
                        config={"displayModeBar": False}, theme=None)
        st.caption(f"{stage.title} (layer `{stage.layer}`): {stage.caption}. The {len(stage.top_channels)} "
                   "channels with the highest mean activation, on one colour scale.")
    else:
        st.plotly_chart(pooled_figure(stage), key=f"inside_{stage.key}", config={"displayModeBar": False},
                        theme=None)
        st.caption(f"Each of the last map's channels averaged to one number (layer `{stage.layer}`). The "
                   "classifier is one weighted sum of these per class, turned into the probabilities above.")
