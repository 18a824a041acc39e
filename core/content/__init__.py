"""What the lab teaches besides training: the CNN history table (history.py)."""
