"""core.analysis.predict_image: upload validation with real bytes, the CIFAR-style preparation, and a
reference check that an uploaded photo takes exactly the test images' path through the model."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.analysis.predict_image import (CIFAR_SIDE, DISPLAY_SIDE, ImageRejected, centre_square, predict, read_photo,
                                         to_cifar)


def _encode(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_accepts_png_and_jpeg(noise, fmt):
    photo = read_photo(_encode(noise, fmt))
    assert photo.format == fmt and photo.size == (400, 300)
    assert photo.pixels.shape == (CIFAR_SIDE, CIFAR_SIDE, 3) and photo.pixels.dtype == np.uint8
    assert photo.square.size == (300, 300) and photo.notes == ()


@pytest.mark.parametrize("name, data, words", [
    ("empty", b"", "empty"),
    ("text", b"just some text\n" * 50, "not an image file"),
    ("bomb beyond Pillow's own limit", _png_header(100_000, 100_000), "decompression bomb"),
    ("bomb beyond ours", _png_header(9_000, 9_000), "9,000 × 9,000 pixels (81 megapixels)"),
], ids=["empty", "text", "bomb-pillow", "bomb-ours"])
def test_rejects_with_a_reason(name, data, words):
    with pytest.raises(ImageRejected, match="PNG or JPEG") as caught:
        read_photo(data)
    assert words in str(caught.value), name


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_rejects_truncated_files(noise, fmt):
    data = _encode(noise, fmt)
    with pytest.raises(ImageRejected, match="cut off or damaged"):
        read_photo(data[: len(data) // 2])


def test_rejects_other_formats_and_large_files(noise):
    with pytest.raises(ImageRejected, match="This is a GIF image; only PNG and JPEG"):
        read_photo(_encode(noise, "GIF"))
    with pytest.raises(ImageRejected, match="This is a WEBP image"):
        read_photo(_encode(noise, "WEBP"))
    data = _encode(noise, "PNG")
    with pytest.raises(ImageRejected, match=r"more than the 0\.1 MB accepted"):
        read_photo(data, max_bytes=100 * 1024)
    with pytest.raises(ImageRejected, match="decompression bomb"):
        read_photo(data, max_pixels=100_000)


def test_corrupt_png_checksum_is_damaged(noise):
    data = bytearray(_encode(noise, "PNG"))
    data[len(data) // 2] ^= 0xFF                      # a flipped byte inside the image data
    with pytest.raises(ImageRejected, match="cut off or damaged"):
        read_photo(bytes(data))


def test_exif_orientation_transparency_and_grey():
    tall = np.zeros((40, 80, 3), dtype=np.uint8)
    tall[:, :40] = 255                                 # left half white
    image = Image.fromarray(tall)
    exif = image.getexif()
    exif[0x0112] = 6                                   # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=95)
    photo = read_photo(buffer.getvalue())
    assert photo.size == (40, 80) and "turned upright" in photo.notes[0]
    assert photo.pixels[:16].mean() > 200 and photo.pixels[-16:].mean() < 50   # white half now on top

    rgba = np.zeros((64, 64, 4), dtype=np.uint8)       # fully transparent black
    photo = read_photo(_encode(rgba, "PNG"))
    assert (photo.pixels == 255).all() and "transparent parts filled with white" in photo.notes

    grey16 = Image.fromarray(np.full((50, 50), 65535, dtype=np.uint16))
    buffer = io.BytesIO()
    grey16.save(buffer, format="PNG")
    photo = read_photo(buffer.getvalue())
    assert (photo.pixels == 255).all() and any("16-bit" in n for n in photo.notes)


def test_centre_square_and_shrinking():
    image = Image.fromarray(np.arange(6 * 10 * 3, dtype=np.uint8).reshape(6, 10, 3))
    square = centre_square(image)
    assert square.size == (6, 6)
    np.testing.assert_array_equal(np.asarray(square), np.asarray(image)[:, 2:8])
    original = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert (to_cifar(Image.fromarray(original)) == original).all()                 # 32×32: unchanged
    blocks = Image.fromarray(original).resize((256, 256), Image.Resampling.NEAREST)
    assert (to_cifar(blocks) == original).all()        # area averaging undoes a whole-pixel enlargement
    assert to_cifar(Image.fromarray(original[:8, :8])).shape == (32, 32, 3)         # small: enlarged


def test_large_jpeg_is_decoded_reduced(noise):
    big = np.kron(noise, np.ones((8, 8, 1), dtype=np.uint8))          # 2400 × 3200
    photo = read_photo(_encode(big, "JPEG", quality=90))
    assert photo.size == (3200, 2400) and photo.square.size == (DISPLAY_SIDE, DISPLAY_SIDE)


@pytest.mark.parametrize("mode", ["P", "1", "RGBA", "L"])
def test_large_pngs_are_shrunk_by_area_averaging_before_conversion(mode):
    """Squares over WORK_SIDE are reduced by a whole factor first (Image.reduce has no palette or
    1-bit version: those are converted to the small square's modes on the way)."""
    halves = np.zeros((1800, 2400, 4), dtype=np.uint8)
    halves[:, 1200:] = 255                                        # left half black, right half white
    halves[..., 3] = 255                                          # opaque
    image = Image.fromarray(halves if mode == "RGBA" else halves[..., 0])
    image = image.convert(mode) if mode in ("P", "1") else image
    photo = read_photo(_encode(np.asarray(image), "PNG") if mode != "1" else _save(image))
    assert photo.size == (2400, 1800) and photo.square.size == (DISPLAY_SIDE, DISPLAY_SIDE)
    assert (photo.pixels[:, :15] == 0).all() and (photo.pixels[:, 17:] == 255).all()


def _save(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_photo_goes_the_test_images_way(trained_run, fixture_data_dir):
    """An 8× enlarged test image, uploaded as a PNG, becomes the test image again, and the model
    gives it the probabilities stored for that test image (float16 on disk)."""
    from core.data.cifar10 import load_cifar10
    from core.training.model import load_checkpoint
    x_test = load_cifar10(fixture_data_dir, allow_download=False).x_test
    y_true, y_prob = trained_run.read_predictions()
    model = load_checkpoint(trained_run.checkpoint("last"))
    for index in (0, 17, 55):
        enlarged = np.kron(x_test[index], np.ones((8, 8, 1), dtype=np.uint8))
        photo = read_photo(_encode(enlarged, "PNG"))
        np.testing.assert_array_equal(photo.pixels, x_test[index])
        probabilities = predict(model, photo.pixels)
        assert probabilities.shape == (10,) and probabilities.sum() == pytest.approx(1.0, abs=1e-4)
        np.testing.assert_allclose(probabilities, y_prob[index].astype(np.float64), atol=2e-3)


# --- memory: an upload may not make the server allocate more than a bounded amount ------------------
# The child builds a 16-bit grey PNG row by row (the whole image is never in memory: ~100 KB of
# zlib for `side`² zeros), then calls read_photo and reports how far its peak RSS rose (kB).
_PEAK_SCRIPT = r"""
import io, resource, struct, sys, zlib
from core.analysis.predict_image import ImageRejected, read_photo
side, value = int(sys.argv[1]), int(sys.argv[2])
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
packer, row = zlib.compressobj(9), b"\x00" + struct.pack(">H", value) * side
idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0))
        + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    photo = read_photo(data)
    outcome = f"accepted {int(photo.pixels.min())} {int(photo.pixels.max())}"
except ImageRejected as exc:
    outcome = f"rejected {exc}"
print(len(data), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, outcome)
"""


def _peak_of_reading(side: int, value: int) -> tuple[int, int, str]:
    """(PNG bytes, peak RSS growth in MB, outcome) of read_photo on a side×side 16-bit grey PNG."""
    import subprocess
    import sys
    from pathlib import Path
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(side), str(value)], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    size, grown_kb, outcome = done.stdout.strip().split(" ", 2)
    return int(size), int(grown_kb) // 1024, outcome


def test_a_50_megapixel_16_bit_png_is_refused_without_decoding_it():
    """~100 KB that would decode to 98 MB of 16-bit pixels (and, before the fix, ~400 MB of float64
    on top): refused from its header, so reading it costs next to nothing."""
    size, grown_mb, outcome = _peak_of_reading(7_000, 40_000)      # 49 megapixels, under MAX_PIXELS
    assert size < 200_000
    assert grown_mb < 60, f"reading a {size:,}-byte upload raised peak memory by {grown_mb} MB"
    assert outcome.startswith("rejected") and "MB" in outcome and "PNG" in outcome, outcome


def test_a_16_bit_png_within_the_budget_never_holds_float64_copies():
    """A 4000×4000 16-bit grey PNG (32 MB decoded) is accepted and scaled to 8 bits; before the fix
    its float64 copy and temporaries alone took ~380 MB."""
    size, grown_mb, outcome = _peak_of_reading(4_000, 65_535)
    assert outcome == "accepted 255 255", outcome
    assert grown_mb < 150, f"reading a {size:,}-byte upload raised peak memory by {grown_mb} MB"
