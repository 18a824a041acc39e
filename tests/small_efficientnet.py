"""A small EfficientNet for the tests whose subject is plumbing, not the network.

The queue, the faults, the CLI, Ray, concurrency and the job manager behave the same whatever the
network's size, and a real B0 spends most of such a test building, tracing, saving and loading
itself (B0 traces its first step in ~40 s on these CPUs, this one in ~15). So those tests train
Keras's own EfficientNet builder at width 0.25 and depth 0.1: the same seven stages with the same
layer names (stem_conv, block1a_... block7a_..., top_conv), the same MBConv blocks, BatchNorm,
in-model input layers, head and checkpoints, at 105 layers and 0.13M parameters instead of 237
and 4.0M. Tests whose subject is the model itself (transfer, folding, slots, GPU branches,
progressive resizing, real data, inside the network, the Quick demo) keep the real B0.

It is defined here, for the tests, and never offered to users: only with EFFLAB_TEST_NETWORK=small
in the environment does `keras.applications.EfficientNetB0` build it instead of B0, and only without
weights (a B0 with ImageNet's weights or a weights file stays the real B0). The variable
is read at each call, so a test turns it on with `monkeypatch.setenv` (the `small_network` marker,
tests/conftest.py) and every process the test starts inherits it; those find this hook through
tests/site/sitecustomize.py, which tests/conftest.py puts on their PYTHONPATH.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import sys

ENV = "EFFLAB_TEST_NETWORK"
WIDTH, DEPTH = 0.25, 0.1          # keras.applications' B0 is 1.0, 1.0
_MODULE = "keras.applications"


def active() -> bool:
    return os.environ.get(ENV) == "small"


def _wrap(real_b0):
    @functools.wraps(real_b0)
    def efficientnet_b0(*args, **kwargs):
        # It has no weights of its own: a B0 asked for with weights (ImageNet's, or a file of B0's)
        # is the real one, so transfer learning inside a plumbing test stays what it was.
        if not active() or args or kwargs.get("weights", "imagenet") is not None:
            return real_b0(*args, **kwargs)
        from keras.src.applications.efficientnet import EfficientNet
        kwargs.setdefault("name", "efficientnetb0")
        return EfficientNet(WIDTH, DEPTH, 224, 0.2, **kwargs)
    efficientnet_b0.small_network_hook = True
    return efficientnet_b0


def _patch(module) -> None:
    if not getattr(module.EfficientNetB0, "small_network_hook", False):
        module.EfficientNetB0 = _wrap(module.EfficientNetB0)


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Wraps EfficientNetB0 as soon as keras.applications has been imported, without importing
    Keras (or TensorFlow) before the code under test does."""

    def find_spec(self, name, path=None, target=None):
        if name != _MODULE:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            _patch(module)
        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    """Makes keras.applications.EfficientNetB0 build the small network whenever EFFLAB_TEST_NETWORK
    is `small` (now, or after Keras is imported)."""
    if _MODULE in sys.modules:
        _patch(sys.modules[_MODULE])
    elif not any(isinstance(finder, _PatchAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchAfterImport())
