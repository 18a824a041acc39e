"""Run by Python at start-up in every process the tests start (tests/conftest.py puts this folder
on their PYTHONPATH): with EFFLAB_TEST_NETWORK=small, keras.applications.EfficientNetB0 builds
the tests' small EfficientNet (tests/small_efficientnet.py). Without the variable it does nothing."""

import os

if os.environ.get("EFFLAB_TEST_NETWORK"):
    import importlib.util

    _path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "small_efficientnet.py")
    _spec = importlib.util.spec_from_file_location("small_efficientnet", _path)
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    _module.install()
