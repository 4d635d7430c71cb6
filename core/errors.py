"""Exceptions that carry a one-line, user-facing message (printed by main.py without a traceback)."""


class StudioError(Exception):
    """Base class: bad input or an environment problem the user can fix."""


class CheckpointError(StudioError):
    """A checkpoint file is unreadable, unsafe, or does not describe a generator we can build."""


class DatasetError(StudioError):
    """A dataset folder/zip or its dataset.json is malformed."""
