"""Pure Pillow/numpy helpers for the image pages: upscaling, captions, heat-map overlays, paging
(the pages' URL parameters live in dashboard/url_state.py).

No Streamlit here, so every function is unit-tested on its pixels. CIFAR-10 images are 32×32:
"nearest" keeps every source pixel a crisp square (what the model saw), "smooth" (Lanczos)
is easier on the eye but invents detail.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from plotly.colors import hex_to_rgb, sequential

from dashboard.style import SEQUENTIAL_SCALE

UPSCALE_METHODS = {"nearest": Image.Resampling.NEAREST, "smooth": Image.Resampling.LANCZOS}
PER_PAGE_CHOICES = (12, 24, 48, 96)
# The overlay uses the house sequential scale (cividis: readable with every common colour-vision
# deficiency, and monotonic in lightness, so it still reads in grey).
_SCALE = np.array([hex_to_rgb(c) if c.startswith("#") else
                   tuple(int(v) for v in c[c.index("(") + 1:-1].split(","))
                   for c in getattr(sequential, SEQUENTIAL_SCALE)], dtype=np.float64)


def _as_uint8_rgb(image) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an (h, w, 3) image, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return array


def upscale(image, size: int, method: str = "nearest") -> Image.Image:
    """A square RGB image enlarged to size×size pixels.

    Args:
        image: uint8 (h, w, 3) array (or anything np.asarray makes one of).
        size: Output side in pixels.
        method: "nearest" (crisp blocks) or "smooth" (Lanczos).
    """
    if method not in UPSCALE_METHODS:
        raise ValueError(f"method must be one of {tuple(UPSCALE_METHODS)}, got {method!r}")
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    return Image.fromarray(_as_uint8_rgb(image)).resize((size, size), UPSCALE_METHODS[method])


def caption(true_name: str, predicted_name: str, confidence: float) -> str:
    """"cat → dog (97%)": true class, predicted class, probability of the prediction."""
    return f"{true_name} → {predicted_name} ({100 * confidence:.0f}%)"


def colormap(heat) -> np.ndarray:
    """uint8 RGB (h, w, 3) for values in [0, 1] (clipped) on the house sequential scale."""
    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float64)), 0.0, 1.0)
    position = heat * (len(_SCALE) - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, len(_SCALE) - 1)
    frac = (position - low)[..., None]
    rgb = _SCALE[low] * (1 - frac) + _SCALE[high] * frac
    return np.round(rgb).astype(np.uint8)


def overlay_heatmap(image, heat, alpha: float = 0.5, size: int | None = None,
                    method: str = "nearest") -> Image.Image:
    """The image with a heat map blended over it: (1 - alpha)·image + alpha·colour(heat).

    Args:
        image: uint8 (h, w, 3).
        heat: (H, W) values in [0, 1], any size (resized bilinearly to the output).
        alpha: Opacity of the heat map, 0..1.
        size: Output side in pixels (default: the image's own width).
        method: How the image is upscaled ("nearest" or "smooth").
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = _as_uint8_rgb(image)
    size = size or base.shape[1]
    picture = np.asarray(upscale(base, size, method), dtype=np.float64)
    colours = np.asarray(heat_image(heat, size), dtype=np.float64)
    return Image.fromarray(np.round((1 - alpha) * picture + alpha * colours).astype(np.uint8))


def heat_image(heat, size: int) -> Image.Image:
    """The heat map alone, coloured, resized (bilinear) to size×size."""
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"expected a 2-D heat map, got shape {heat.shape}")
    resized = np.asarray(Image.fromarray(heat).resize((size, size), Image.Resampling.BILINEAR))
    return Image.fromarray(colormap(resized))


def page_count(n_items: int, per_page: int) -> int:
    """Pages needed for n_items (at least 1, so an empty gallery still has a page 1)."""
    if per_page < 1:
        raise ValueError(f"per_page must be at least 1, got {per_page}")
    return max(1, math.ceil(max(0, n_items) / per_page))


def page_bounds(page: int, per_page: int, n_items: int) -> tuple[int, int]:
    """[start, stop) of 1-based `page`, clamped to the pages there are."""
    page = min(max(1, int(page)), page_count(n_items, per_page))
    start = (page - 1) * per_page
    return start, min(start + per_page, max(0, n_items))


def grid_rows(n_items: int, columns: int) -> list[range]:
    """Item positions row by row for a grid of `columns` columns."""
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    return [range(i, min(i + columns, n_items)) for i in range(0, max(0, n_items), columns)]
