"""A photo of the user's own -> what a run's model says about it, prepared as CIFAR-10 images are.

CIFAR-10 images are 32×32 photos, and every model here was trained on them: uint8 32×32 images
resized bilinearly to the run's `image_size` inside the input pipeline (core.data.cifar10.make_dataset),
with EfficientNet's own rescaling inside the model. So an uploaded photo is made into a CIFAR
image first: turned upright (EXIF), flattened onto white if transparent, centre-cropped to a
square and shrunk to 32×32 by area averaging (each output pixel is the mean of the photo pixels
it covers); from there it takes exactly the path of a test image (`core.analysis.saliency.prepare_image`,
the same `tf.image.resize`).

Uploads are untrusted bytes. `read_photo` accepts PNG and JPEG only, refuses files over the size
limit and images whose header declares more pixels than `MAX_PIXELS` before decoding a single
pixel (a "decompression bomb": a few KB that would inflate to gigabytes), checks the file's
integrity (`verify`, then a fresh decode that refuses truncated data), and says in one sentence
what was wrong and what is accepted. Pillow and numpy only; TensorFlow is imported by `predict`.

Memory is budgeted, not just pixels: a 50-megapixel 16-bit grey PNG compresses to ~100 KB and
passes the pixel check, yet decodes to 98 MB (and a float64 copy of it would be 400 MB). The model
needs 32×32 pixels and the page 384×384, so a JPEG is decoded at 1/2..1/8 scale (draft mode) and
a PNG, which cannot be decoded smaller, is refused from its header when its decoded pixels would
take more than `MAX_DECODED_BYTES`. After decoding, the centre square is cut, shrunk by whole
factors (`Image.reduce`, an exact area average) to at most `WORK_SIDE`, and only then converted:
16-bit grey becomes 8 bits inside Pillow, and nothing is ever held as float64.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.analysis.saliency import input_size, prepare_image

CIFAR_SIDE = 32
MAX_UPLOAD_MB = 10            # .streamlit/config.toml server.maxUploadSize says the same
MAX_PIXELS = 50_000_000       # 50 megapixels: a 48 MP phone photo passes, a bomb does not
DISPLAY_SIDE = 384            # the square crop is kept this large for the page, no larger
WORK_SIDE = 2 * DISPLAY_SIDE  # decoded squares larger than this are shrunk by a whole factor first
MAX_DECODED_BYTES = 64 * 1024 * 1024   # Pillow's memory for the decoded pixels of one upload
FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG"}  # MPO: a JPEG with extra frames (phones)
ACCEPTED = "a PNG or JPEG photo"
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose does)
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
           4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
           6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I;16N")


class ImageRejected(ValueError):
    """An upload that is not a usable PNG/JPEG photo; str(error) says why and what is accepted."""


@dataclass(frozen=True, eq=False)
class Photo:
    """An accepted upload, ready for the model."""

    pixels: np.ndarray        # uint8 (32, 32, 3): what the model sees, as a CIFAR-10 image
    square: Image.Image       # the centre crop, RGB, at most DISPLAY_SIDE px: for showing
    format: str               # "PNG" or "JPEG"
    size: tuple[int, int]     # (width, height) of the upload, upright
    notes: tuple[str, ...]    # what was done beyond crop + shrink, e.g. "turned upright (EXIF)"


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1024 / 1024:.1f} MB"


def _bomb(width: int, height: int, max_pixels: int) -> ImageRejected:
    return ImageRejected(
        f"The image declares {width:,} × {height:,} pixels ({width * height / 1e6:,.0f} megapixels), "
        f"more than the {max_pixels / 1e6:,.0f} megapixels accepted: decoding it could take gigabytes "
        f"of memory (a \"decompression bomb\"), so it was not opened. Upload {ACCEPTED} of at most "
        f"{max_pixels / 1e6:,.0f} megapixels.")


def decoded_bytes(image: Image.Image) -> int:
    """Bytes Pillow holds for `image`'s pixels once decoded (1 per pixel for 1/L/P, 2 for 16-bit
    grey, 4 for every other mode: Pillow stores multi-band pixels in 4 bytes)."""
    per_pixel = 1 if image.mode in ("1", "L", "P") else 2 if image.mode in SIXTEEN_BIT_GREY else 4
    return image.width * image.height * per_pixel


def _over_budget(image: Image.Image, kind: str, budget: int) -> ImageRejected:
    width, height = image.size
    return ImageRejected(
        f"Decoding this {width:,} × {height:,} {kind} ({image.mode} pixels) would take "
        f"{_megabytes(decoded_bytes(image))} of memory, more than the {_megabytes(budget)} allowed "
        f"for one upload (the model sees only {CIFAR_SIDE}×{CIFAR_SIDE} pixels), so it was not decoded. "
        f"Save it smaller (for example 2,000 × 2,000 pixels) or as 8-bit JPEG, and upload {ACCEPTED}.")


def _damaged(exc: BaseException) -> ImageRejected:
    return ImageRejected(
        f"The file is cut off or damaged ({exc}), so it cannot be decoded. Re-save or re-export "
        f"it and upload it again ({ACCEPTED}).")


def _to_eight_bits(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit or float grey as 8-bit "L", scaled by 255/65535 when any value exceeds 255.

    Done by Pillow's point transform (one 16-bit temporary, rounded as round() would), never
    through a float64 array."""
    top = 65535.0 if image.getextrema()[1] > 255 else 255.0
    if image.mode not in SIXTEEN_BIT_GREY:      # "I" / "F": rare; small by now (after the shrink)
        values = np.clip(np.asarray(image, dtype=np.float32) / top * 255.0, 0, 255)
        return Image.fromarray(np.rint(values).astype(np.uint8), "L")
    if top > 255:
        image = image.point(lambda v: v * (255.0 / 65535.0) + 0.5)
    return image.convert("L")


def _to_rgb(image: Image.Image) -> tuple[Image.Image, list[str]]:
    notes = []
    if image.mode in ("I", "F", *SIXTEEN_BIT_GREY):   # 16-bit or float grey
        image = _to_eight_bits(image)
        notes.append("16-bit grey scaled to 8 bits")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("transparent parts filled with white")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode in ("L", "1"):
        notes.append("grey-scale image (the model was trained on colour photos)")
    return image.convert("RGB"), notes


def centre_square(image: Image.Image) -> Image.Image:
    """The largest centred square of `image` (the middle of a landscape or portrait photo)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def to_cifar(square: Image.Image, side: int = CIFAR_SIDE) -> np.ndarray:
    """A square RGB image as a CIFAR-10 image: uint8 (side, side, 3).

    Shrinking averages the pixels each output pixel covers (box filter: no aliasing, no
    invented detail); a smaller image is enlarged bilinearly. A side×side image is unchanged.
    """
    if square.size == (side, side):
        return np.asarray(square.convert("RGB"), dtype=np.uint8).copy()
    method = Image.Resampling.BOX if min(square.size) >= side else Image.Resampling.BILINEAR
    return np.asarray(square.convert("RGB").resize((side, side), method), dtype=np.uint8)


def _probe(data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    """The opened (not decoded) upload and its format, or ImageRejected for anything but a
    PNG/JPEG header declaring at most `max_pixels`."""
    try:
        with warnings.catch_warnings():
            # Pillow warns above Image.MAX_IMAGE_PIXELS and raises above twice that: both are ours to refuse.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        declared = re.search(r"\((\d+) pixels\)", str(exc))     # "Image size (N pixels) exceeds ..."
        pixels = f"{int(declared.group(1)) / 1e6:,.0f} megapixels" if declared else "too many pixels"
        raise ImageRejected(
            f"The image declares {pixels}, more than the {max_pixels / 1e6:,.0f} megapixels accepted: "
            "decoding it could take gigabytes of memory (a \"decompression bomb\"), so it was not "
            f"opened. Upload {ACCEPTED} of at most {max_pixels / 1e6:,.0f} megapixels.") from None
    except UnidentifiedImageError:
        raise ImageRejected(f"This is not an image file that can be read (its first bytes are not a "
                            f"PNG or JPEG header). Upload {ACCEPTED}.") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _damaged(exc) from None
    kind, (width, height) = probe.format, probe.size
    if kind not in FORMATS:
        raise ImageRejected(f"This is a {kind} image; only PNG and JPEG are accepted. Save it as "
                            "PNG or JPEG (any image viewer can) and upload that.")
    if width < 1 or height < 1:
        raise ImageRejected(f"The image is {width} × {height} pixels: there is nothing to look at.")
    if width * height > max_pixels:
        raise _bomb(width, height, max_pixels)
    return probe, kind


def _decode(data: bytes, kind: str, budget: int) -> Image.Image:
    """Decodes a probed upload within `budget` bytes of pixels: a JPEG at the smallest scale
    (1/2..1/8) that still covers WORK_SIDE, a PNG only if its full size fits."""
    try:
        image = Image.open(io.BytesIO(data))    # verify() left the probe unusable: open again
        if kind == "JPEG":
            image.draft("RGB", (WORK_SIDE, WORK_SIDE))
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds here; all mean "damaged"
        raise _damaged(exc) from None
    if decoded_bytes(image) > budget:           # from the header (and draft scale): nothing decoded yet
        raise _over_budget(image, kind, budget)
    try:
        image.load()                            # refuses truncated data (LOAD_TRUNCATED_IMAGES off)
    except Exception as exc:  # noqa: BLE001
        raise _damaged(exc) from None
    return image


def _small_upright_square(image: Image.Image, notes: list[str]) -> tuple[Image.Image, int]:
    """(The centre square, upright, at most about WORK_SIDE; the EXIF orientation). Cut and shrunk
    before any conversion, so no converted copy of the full decoded image is ever made; the caller
    passes its only reference, so the decoded image is freed as soon as the square is cut."""
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    square = centre_square(image)               # the centre square of a rotated image is the rotated one
    del image
    if square.mode in ("I", "F", *SIXTEEN_BIT_GREY):
        square = _to_eight_bits(square)
        notes.append("16-bit grey scaled to 8 bits")
    factor = square.width // WORK_SIDE
    if factor >= 2:                             # whole-factor area average: exact, and cheap
        if square.mode in ("P", "1"):           # Image.reduce has no palette or 1-bit version
            square = square.convert("RGBA" if square.mode == "P" else "L")
        square = square.reduce(factor)
    if orientation in UPRIGHT:
        square = square.transpose(UPRIGHT[orientation])
        notes.append("turned upright as its EXIF orientation says")
    return square, orientation


def read_photo(data: bytes, *, max_bytes: int = MAX_UPLOAD_MB * 1024 * 1024,
               max_pixels: int = MAX_PIXELS, max_decoded_bytes: int = MAX_DECODED_BYTES) -> Photo:
    """Validates an upload and prepares it as a 32×32 CIFAR-10 image.

    Args:
        data: The uploaded file's bytes.
        max_bytes: Larger files are refused without being opened.
        max_pixels: Images declaring more pixels are refused before decoding.
        max_decoded_bytes: Images whose decoded pixels (after JPEG draft scaling) would take
            more memory are refused before decoding.

    Returns:
        A `Photo`.

    Raises:
        ImageRejected: Empty, too large, not an image, not PNG/JPEG, a decompression bomb,
            over the memory budget, truncated or otherwise damaged; the message says which and
            what is accepted.
    """
    if not data:
        raise ImageRejected(f"The file is empty. Upload {ACCEPTED}.")
    if len(data) > max_bytes:
        raise ImageRejected(f"The file is {_megabytes(len(data))}, more than the "
                            f"{_megabytes(max_bytes)} accepted. Upload a smaller PNG or JPEG photo (a phone "
                            "photo saved as JPEG is usually 2–5 MB).")
    probe, kind = _probe(data, max_pixels)
    width, height = probe.size
    try:
        probe.verify()                          # checksums and structure, without decoding
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds here; all mean "damaged"
        raise _damaged(exc) from None
    notes: list[str] = []
    square, orientation = _small_upright_square(_decode(data, kind, max_decoded_bytes), notes)
    if orientation in range(5, 9):              # 5..8 swap width and height
        width, height = height, width
    rgb, more = _to_rgb(square)
    notes.extend(n for n in more if n not in notes)
    pixels = to_cifar(rgb)
    if rgb.width > DISPLAY_SIDE:
        rgb = rgb.resize((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
    return Photo(pixels=pixels, square=rgb, format=FORMATS[kind], size=(width, height),
                 notes=tuple(notes))


def predict(model, pixels: np.ndarray) -> np.ndarray:
    """Class probabilities (float64, (10,)) of one uint8 32×32 image, resized to the model's
    input exactly as a test image is (`core.analysis.saliency.prepare_image`, as core.data.cifar10.make_dataset)."""
    x = prepare_image(np.asarray(pixels, dtype=np.uint8), input_size(model))
    return np.asarray(model(x, training=False)[0], dtype=np.float64)
