"""The one base of every error a user can meet: the CLI prints its message as one line (exit code 2), and a
traceback only with ``-v``. Raise a subclass with a message that says what is wrong and what to do."""


class StancestreamError(RuntimeError):
    """An expected failure with a message meant for the user."""
