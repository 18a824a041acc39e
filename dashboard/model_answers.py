"""Asking a run's model about one image, for any page (the gallery, try-your-own-image, the
presentation, inside the network): probabilities and a saliency map, computed once per
(checkpoint version, image, class, method) and shared by every session."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from dashboard import state


def checkpoint_key(run_id: str) -> tuple[str, float] | None:
    """(path, version) of a run's last checkpoint, or None when it has none: a cache key."""
    run = state.get_run(run_id)
    path = run.checkpoint("last") if run is not None else None
    return (str(path), run.version("last")) if path is not None else None


@dataclass(frozen=True, eq=False)
class Answer:
    probabilities: np.ndarray   # (10,) float64
    heatmap: np.ndarray         # (H, W) in [0, 1] at the model's input size
    method: str                 # "grad-cam" or "smoothgrad"
    description: str
    input_side: int             # the model's input size, px


@st.cache_data(max_entries=128, show_spinner=False)
def _answer(checkpoint: str, checkpoint_time: float, pixels: bytes, shape: tuple[int, ...],
            class_index: int | None, method: str, _model) -> Answer:
    from core.analysis.predict_image import predict
    from core.analysis.saliency import explain, input_size
    image = np.frombuffer(pixels, dtype=np.uint8).reshape(shape)
    probabilities = predict(_model, image)
    target = int(np.argmax(probabilities)) if class_index is None else int(class_index)
    saliency = explain(_model, image, target, method)
    return Answer(probabilities, saliency.heatmap, saliency.method, saliency.description,
                  input_size(_model)[0])


def ask_model(run_id: str, image: np.ndarray, class_index: int | None = None,
              method: str = "auto") -> Answer | None:
    """The run's latest checkpoint on one uint8 32×32 image: probabilities, and a saliency map
    (core.analysis.saliency.explain's `method`) for `class_index` (default: the predicted class). None when
    the run has no checkpoint."""
    key = checkpoint_key(run_id)
    model = state.load_model(run_id) if key else None
    if model is None:
        return None
    pixels = np.ascontiguousarray(image, dtype=np.uint8)
    return _answer(key[0], key[1], pixels.tobytes(), pixels.shape, class_index, method, model)


def photo_or_stop(upload, max_mb: int):
    """An uploaded photo read as CIFAR-10's were (core.analysis.predict_image.read_photo); a refused one is
    said, naming the file and why, and the page stops there."""
    from core.analysis.predict_image import ImageRejected, read_photo
    try:
        return read_photo(upload.getvalue(), max_bytes=max_mb * 1024 * 1024)
    except ImageRejected as exc:
        st.error(f"**{upload.name}** cannot be used. {exc}")
        st.stop()
