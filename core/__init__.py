"""EfficientNet Lab's engine: plain Python + TensorFlow/Keras (or JAX), no Streamlit, no Plotly.

One package per part, lowest floor first; each imports only its own and the floors above it
in this list (tests/test_structure.py checks it, and names the one lazy exception):

    errors.py    the kinds of failure the CLI and the run's status tell apart
    settings/    what a run is asked to do: config.py (every setting declared once: checks, CLI
                 flags, the form's layers), presets.py, variants.py, env_settings.py
    store/       where runs live: runs.py (the one code that knows a run's rows and files) over
                 database.py and migrations/; states.py, ownership.py, run_files.py, run_import.py
    data/        the pixels: cifar10.py, batches.py, augment.py
    estimates/   what work costs: timing.py (the device, images/s, minutes), memory.py (the peak),
                 startup.py (how long a start-up usually takes here)
    content/     history.py (the CNN history table)
    analysis/    what a trained model tells: evaluate.py, saliency.py, inside.py, predict_image.py,
                 export.py
    training/    one run's fit: train.py (the phases), callbacks.py (their order), model.py,
                 backend.py, progress.py, partial_epoch.py, pruning.py, lr_find.py, processes.py
    jobs/        what trains when and where: scheduler.py (JobManager: the queue, slots, memory
                 admission) hands a claimed run to an executor (executors/: thread, process, Ray);
                 slots.py, admission.py (what fits beside what trains), queue.py (the line, its waits)
    sweeps/      Optuna studies in the lab's database; W&B-format sweep files

The dashboard (dashboard/, pages/) and the CLI (__main__.py) call these; nothing here calls them.
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) buries the CLI's own output and
# the server log; warnings and errors still show. Set before anything imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
