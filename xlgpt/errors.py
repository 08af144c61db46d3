"""Errors a user can act on: the CLI prints them as one line and exits non-zero, never a traceback."""


class XlgptError(Exception):
    """A problem with the user's input or environment, stated in one line."""

    exit_code = 2


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that every cleanup
    written for Ctrl-C (temporary files, worker processes) runs for them too. Exit status 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
