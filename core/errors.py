"""Kinds of failure the engine tells apart: what the user can fix, and what went wrong in training.

The CLI's exit code and the run's `error_kind` follow the class, never its name: a renamed
exception cannot change what a user is told to do.
"""


class UserInputError(Exception):
    """Settings, data or weights the user can fix (exit code 2, error_kind "input").

    Its message already says what is wrong and what to do, so it is shown as it is.
    """


class SelfExplainedError(Exception):
    """A failure whose message already says what happened and what to do (shown as it is)."""


class CheckpointError(SelfExplainedError, RuntimeError):
    """A checkpoint that cannot be written or read; the message names the file, why and what to do.
    Here, not in the run store, so that the model code can raise it without importing the store."""
