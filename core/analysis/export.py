"""Take the model home: a run's checkpoint as a .keras file that plain Keras loads, and the ten
lines of code that classify a photo with it.

A checkpoint holds what resuming needs (optimizer state) and this lab's own input layer
(`core.data.augment.Augment`, registered with Keras only where core.training.model is imported), so plain
`keras.models.load_model` elsewhere would stop at "could not locate class". `portable_model`
rebuilds the network with that layer replaced by Keras's `Identity` (it only acts while
training) and the same weights, uncompiled: the file is smaller, and anyone with Keras 3 can
open it. `SNIPPET` is tested by executing it (tests/test_export.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SNIPPET = '''\
import sys
import keras, numpy as np
from PIL import Image, ImageOps

CLASSES = "airplane automobile bird cat deer dog frog horse ship truck".split()
model = keras.models.load_model("{model_file}", safe_mode=True)
photo = ImageOps.fit(Image.open(sys.argv[1]).convert("RGB"), (32, 32), Image.BOX)  # centre, 32x32 like CIFAR-10
side = model.input_shape[1]  # 32 for this lab's models (they resize inside)
probs = model.predict(np.asarray(photo.resize((side, side), Image.BILINEAR), dtype="float32")[None], verbose=0)[0]
print(CLASSES[probs.argmax()], f"{{probs.max():.1%}}")
'''
TRAINING_ONLY_LAYERS = ("Augment",)     # this lab's layers that are the identity at inference


class ExportError(RuntimeError):
    """The model holds a layer plain Keras cannot rebuild; the message names it."""


def snippet(model_file: str) -> str:
    """SNIPPET with the downloaded file's name filled in (run it as `python classify.py photo.jpg`)."""
    return SNIPPET.format(model_file=str(model_file).replace("\\", "/").replace('"', ""))


def download_name(run_id: str, which: str = "last") -> str:
    """"efficientnet-lab-<run id>-last.keras"."""
    if which not in ("last", "best"):
        raise ValueError(f"which: expected 'last' or 'best'; got {which!r}")
    return f"efficientnet-lab-{run_id}-{which}.keras"


def _plain_copy(layer):
    import keras
    if type(layer).__name__ in TRAINING_ONLY_LAYERS:
        return keras.layers.Identity(name=layer.name)
    if not type(layer).__module__.startswith("keras."):
        raise ExportError(f"layer {layer.name!r} is a {type(layer).__module__}.{type(layer).__name__}, which "
                          "plain Keras cannot rebuild; only Keras's own layers can be taken home")
    return layer.__class__.from_config(layer.get_config())


def portable_model(model):
    """The same network and weights with Keras layers only, uncompiled (no optimizer state).

    Raises:
        ExportError: A layer other than the known training-only ones is not one of Keras's own.
    """
    import keras
    copy = keras.models.clone_model(model, clone_function=_plain_copy)
    for layer in copy.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    # clone_model keeps the compile state; a new Model over the same graph is uncompiled.
    return keras.Model(copy.inputs, copy.outputs, name=model.name)


def export_model(checkpoint: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Writes the checkpoint's network as a .keras file plain Keras 3 loads; returns its path.

    Raises:
        core.errors.CheckpointError: The checkpoint cannot be loaded.
        ExportError: The network holds a layer plain Keras cannot rebuild.
    """
    from core.training.model import load_checkpoint
    target = Path(target)
    portable_model(load_checkpoint(checkpoint)).save(target)
    return target


def export_bytes(checkpoint: str | os.PathLike) -> bytes:
    """export_model into a temporary file, returned as bytes (for a download button)."""
    with tempfile.TemporaryDirectory(prefix="efflab-export-") as folder:
        return export_model(checkpoint, Path(folder) / "model.keras").read_bytes()
