"""What a run is asked to do: every setting declared once (config.py: checks, CLI flags, the form's
layers), the presets, the B0-B7 facts, and the numbers read from the environment. The lowest floor:
it imports nothing else of the lab but core.errors."""
