r"""The errors a user can fix: one family, so that the ``pyg-sm`` command
prints them as one line (exit status 2) and lets any other exception, a
bug, keep its traceback."""
from pathlib import Path
from typing import Union


class PygSmError(ValueError):
    r"""A problem with what the user gave: a file, a setting, the labels, a
    split that cannot be made. The message says what is wrong and, where
    it can, what to do instead."""


class MissingFileError(PygSmError, FileNotFoundError):
    r"""A file or folder the user named (or that a layout needs) is not
    there."""


class SlideError(PygSmError):
    r"""A slide's files are missing, unreadable or inconsistent; the message
    names the slide and the file."""
    def __init__(self, slide_id: str, path: Union[str, Path], message: str):
        super().__init__(f"slide '{slide_id}' ({path}): {message}")
        self.slide_id = slide_id
        self.path = path


class TrainingDivergedError(PygSmError, FloatingPointError):
    r"""The training loss stopped being finite (a learning rate too high,
    features out of scale); the last good state is kept."""
