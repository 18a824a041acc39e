"""Where runs live: the run store (runs.py) over the lab's database (database.py, migrations/), the
table of allowed state changes (states.py), who may act on a run (ownership.py), and the run folder's
readable export and import (run_files.py, run_import.py, safe_io.py). Only this package names a run's
files or rows."""
