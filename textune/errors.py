"""The one error type users see.

Every mistake a user can fix (a bad field, a missing file, an unreachable
address) is raised as a :class:`TextuneError` carrying what went wrong and how
to fix it. The CLI prints it as one paragraph and exits with status 2; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class TextuneError(Exception):
    """A problem with the user's input or environment that the user can fix.

    ``message`` says what is wrong and names the field or file; ``hint`` says
    what to do about it.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def paragraph(self) -> str:
        """The message and hint as a single paragraph for the terminal."""
        text = self.message.rstrip()
        if self.hint:
            if not text.endswith((".", "!", "?", ":")):
                text += "."
            text += " " + self.hint.strip()
        return " ".join(text.split())
