"""Errors a user can act on: the CLI prints them as one line and exits non-zero, never a traceback."""


class XlgptError(Exception):
    """A problem with the user's input or environment, stated in one line."""

    exit_code = 2
