"""Exceptions that carry a one-line, user-facing message (printed by main.py without a traceback)."""


class StudioError(Exception):
    """Base class: bad input or an environment problem the user can fix."""


class CheckpointError(StudioError):
    """A checkpoint file is unreadable, unsafe, or does not describe a generator we can build."""


class DatasetError(StudioError):
    """A dataset folder/zip or its dataset.json is malformed."""


def one_line(e: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type when it has no text, else the first line of the text
    (torch appends multi-line C++ stack traces to its messages), cut at `limit` characters."""
    text = str(e).strip()
    line = text.splitlines()[0].strip() if text else type(e).__name__
    return line if len(line) <= limit else line[:limit - 1] + "…"
