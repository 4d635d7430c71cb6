"""Persistent studio settings: recent files, window size, open panels, output folder (JSON) and the
ImGui layout (ini).

Both live in ~/.config/triplane-studio/ (or $XDG_CONFIG_HOME/triplane-studio/); a missing or damaged
file just means defaults. Saving merges into the file as it is on disk then, so that two studios open
at once do not undo each other: Recent keeps the files either opened (newest first), and every other
setting this instance did not change keeps the value on disk. Writes are atomic (a crash never leaves
half a file) and, where the OS has file locks, one instance at a time reads and writes.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from core.fileio import atomic_path

log = logging.getLogger(__name__)
MAX_RECENT = 10
FILE = "settings.json"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "triplane-studio"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on the settings directory (no-op where fcntl does not exist)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(directory / ".settings.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read(path: Path) -> dict:
    """The settings file's JSON object ({} when missing or unreadable)."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable settings %s: %s", path, e)
        return {}
    return raw if isinstance(raw, dict) else {}


def _unique(paths: list) -> list[str]:
    return list(dict.fromkeys(p for p in paths if isinstance(p, str) and p))


@dataclass
class Settings:
    recent: list[str] = field(default_factory=list)
    """Most recently opened checkpoints, newest first."""
    window_size: tuple[int, int] | None = None
    """Client area of the window when it was last closed (None: most of the screen)."""
    layout_version: int = 0
    """app.layout.LAYOUT_VERSION of the saved ImGui layout (imgui.ini); an older one is replaced."""
    open_panels: dict[str, bool] = field(default_factory=dict)
    """Panel name -> shown; panels not listed use their default."""
    output_dir: str = ""
    """Folder for the studio's outputs ('' = app.files.default_output_dir())."""

    def __post_init__(self) -> None:
        self.pinned: str | None = None
        """Always listed in Recent (the bundled default model); not saved."""
        self._opened: list[str] = []
        """Checkpoints opened by this instance, newest first (merged into the file's Recent on save)."""
        self._loaded = self._values()

    def _values(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def add_recent(self, path: str) -> None:
        path = str(Path(path).resolve())
        self._opened = _unique([path] + self._opened)
        self.recent = _unique([path] + self.recent)[:MAX_RECENT]

    def recent_entries(self) -> list[str]:
        """Recent as the menus list it: the pinned default model stays in it however many others follow."""
        if self.pinned and self.pinned not in self.recent:
            return self.recent + [self.pinned]
        return list(self.recent)

    @classmethod
    def load(cls, directory: Path | None = None) -> Settings:
        raw = _read((directory or config_dir()) / FILE)
        s = cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})
        s._sanitise()
        s._loaded = s._values()
        return s

    def _sanitise(self) -> None:
        """Wrong types in a hand-edited file become defaults instead of errors later."""
        self.recent = _unique(self.recent if isinstance(self.recent, list) else [])[:MAX_RECENT]
        try:
            self.window_size = tuple(int(v) for v in self.window_size)[:2] if self.window_size else None
        except (TypeError, ValueError):
            self.window_size = None
        if self.window_size is not None and (len(self.window_size) != 2 or min(self.window_size) < 1):
            self.window_size = None
        self.layout_version = self.layout_version if isinstance(self.layout_version, int) else 0
        self.open_panels = self.open_panels if isinstance(self.open_panels, dict) else {}
        self.output_dir = self.output_dir if isinstance(self.output_dir, str) else ""

    def save(self, directory: Path | None = None) -> None:
        """Merge this instance's changes into the file on disk (see the module docstring)."""
        d = directory or config_dir()
        try:
            d.mkdir(parents=True, exist_ok=True)
            with _locked(d):
                on_disk = _read(d / FILE)
                merged = dict(on_disk)
                for key, value in self._values().items():
                    if key not in on_disk or value != self._loaded.get(key):
                        merged[key] = value
                disk_recent = on_disk.get("recent") if isinstance(on_disk.get("recent"), list) else []
                merged["recent"] = _unique(self._opened + disk_recent + self.recent)[:MAX_RECENT]
                with atomic_path(d / FILE) as tmp:
                    tmp.write_text(json.dumps(merged, indent=1))
            self._loaded = self._values()
        except OSError as e:
            log.warning("could not save settings in %s: %s", d, e)
