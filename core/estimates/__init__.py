"""What work costs, before and while it runs: how long (timing.py: the device, images per second,
a run's minutes), how much memory at its peak (memory.py), and how long a start-up usually takes
on this machine (startup.py). Pure arithmetic over measured tables: no Keras, no store."""
