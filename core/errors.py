"""The one base class of errors that the person running the pipeline can fix.

Every part raises a subclass of :class:`UserError` for a problem outside the code (no broker,
Java missing, nothing published, bad SQL, a port in use, a failed quality gate ...). Its message
is one line that says what went wrong and what to do next; the ``engagement`` CLI prints exactly
that and exits non-zero, without a traceback (``--verbose`` adds the traceback and
``details``). Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: ``str()`` is one line saying what to do next.

    ``details`` holds what does not fit on that line (a report, a log tail) for logs and
    ``--verbose``.
    """

    exit_code = 1

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.details = details

    def one_line(self) -> str:
        """The message on one line, whatever the subclass put in it."""
        return " ".join(str(self).split())
