"""EfficientNet Lab's engine: plain Python + TensorFlow/Keras (or JAX), no Streamlit, no Plotly.

How a run flows, and where each part lives:

    settings     config.py (every setting declared once: checks, CLI flags, form), presets.py,
                 variants.py, env_settings.py, errors.py
    store        runs.py (the one code that knows a run's rows and files) over database.py and
                 migrations/; states.py (the table of state changes), ownership.py, run_import.py
    scheduling   jobs.py (JobManager: the queue, slots, memory admission; a scheduler only) hands a
                 claimed run to an executor (executors/: thread, process, ray; submit, stop, alive)
    training     train.py (the fit loop and its callbacks), model.py, data.py, batches.py, augment.py,
                 backend.py, partial_epoch.py, progress.py, startup.py, lr_find.py, weights.py
    estimates    estimate.py, memory.py, admission.py, queue.py (waits and places in line)
    sweeps       sweeps/ (Optuna studies in the lab's database; W&B-format sweep files)
    analysis     evaluate.py, saliency.py, inside.py, predict_image.py, export.py, tensorboard_log.py
    content      history.py (the CNN history table)

The dashboard (dashboard/, pages/) and the CLI (__main__.py) call these; nothing here calls them.
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) buries the CLI's own output and
# the server log; warnings and errors still show. Set before anything imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
