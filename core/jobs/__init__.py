"""Deciding what trains when and where: the scheduler (scheduler.py: the queue, slots, memory
admission) hands a claimed run to an executor (executors/: thread, process, Ray); slots.py,
admission.py and memory.py say what fits; estimate.py and queue.py say how long it takes and how
long one waits."""
