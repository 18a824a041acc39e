"""Where ImageNet weights come from, decided without importing TensorFlow (the pages ask too)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from core.errors import UserInputError
from core.settings.config import TrainConfig
from core.settings.variants import get_variant

DOWNLOAD_HOST = "storage.googleapis.com"   # where keras.applications downloads weights from


class WeightsUnavailableError(UserInputError, RuntimeError):
    """ImageNet weights were asked for but can be neither found locally nor downloaded."""


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def resolve_weights(config: TrainConfig) -> str | None:
    """What to pass as `weights=` to the Keras constructor.

    For `imagenet`: a file in EFFLAB_WEIGHTS_DIR named as Keras names its download (for classrooms
    behind a firewall and for offline tests), else Keras's own download, which it caches and
    md5-checks. Raises WeightsUnavailableError naming the file and folders when neither works.
    """
    if config.weights == "none":
        return None
    if config.weights != "imagenet":
        return config.weights
    filename = get_variant(config.variant).weights_file
    weights_dir = os.environ.get("EFFLAB_WEIGHTS_DIR")
    if weights_dir and (Path(weights_dir) / filename).is_file():
        return str(Path(weights_dir) / filename)
    return "imagenet"


def weights_status(config: TrainConfig) -> tuple[bool | None, str]:
    """(True: on disk, None: will try the download, False: impossible) and a message, without TF work."""
    if config.weights == "none":
        return True, "random initial weights"
    filename = get_variant(config.variant).weights_file
    resolved = resolve_weights(config)
    if resolved != "imagenet":
        return True, f"ImageNet weights from {resolved}"
    if (keras_cache_dir() / filename).is_file():
        return True, f"ImageNet weights from Keras's cache ({keras_cache_dir() / filename})"
    return None, (f"{filename} is not on this machine; Keras will download it on first use. Offline, "
                  f"put it in EFFLAB_WEIGHTS_DIR or {keras_cache_dir()}")


def weights_error(config: TrainConfig, cause: Exception) -> WeightsUnavailableError:
    filename = get_variant(config.variant).weights_file
    where = os.environ.get("EFFLAB_WEIGHTS_DIR") or "a folder you name in EFFLAB_WEIGHTS_DIR"
    return WeightsUnavailableError(
        f"ImageNet weights for {config.variant.upper()} could not be loaded or downloaded "
        f"({type(cause).__name__}: {str(cause)[:120]}). Put {filename} in {where} or in "
        f"{keras_cache_dir()}, or train with weights 'none'.")


def download_reachable(timeout: float = 1.5) -> bool:
    """Whether Keras's weights host answers at all (a fast no on offline machines)."""
    try:
        with socket.create_connection((DOWNLOAD_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def imagenet_weights_obtainable(variant: str) -> bool:
    """True when ImageNet weights for `variant` are on disk or can be downloaded now."""
    available, _ = weights_status(TrainConfig(variant=variant, weights="imagenet"))
    return bool(available) or download_reachable()
