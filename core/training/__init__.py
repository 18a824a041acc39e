"""One run's training: the phases and the fit (train.py), its callbacks in one order (callbacks.py),
the model (model.py, weights.py), the backend's questions (backend.py), live progress and start-up
times (progress.py, startup.py), a Stop that keeps half an epoch (partial_epoch.py), the LR finder,
TensorBoard events, and one run over several processes (processes.py, follower.py). Imports Keras
only inside the functions that need it, so the pages can import the light parts."""
