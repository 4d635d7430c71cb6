"""Persistent studio settings: recent files, window size, open panels (JSON) and the ImGui layout (ini).

Both live in ~/.config/triplane-studio/ (or $XDG_CONFIG_HOME/triplane-studio/); a missing or damaged
file just means defaults. Writes are atomic so a crash never leaves half a settings file behind.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from core.fileio import atomic_path

log = logging.getLogger(__name__)
MAX_RECENT = 10


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "triplane-studio"


@dataclass
class Settings:
    recent: list[str] = field(default_factory=list)
    """Most recently opened checkpoints, newest first."""
    window_size: tuple[int, int] = (1440, 900)
    open_panels: dict[str, bool] = field(default_factory=dict)
    """Panel name -> shown; panels not listed use their default."""

    def add_recent(self, path: str) -> None:
        path = str(Path(path).resolve())
        self.recent = [path] + [p for p in self.recent if p != path][:MAX_RECENT - 1]

    @classmethod
    def load(cls, directory: Path | None = None) -> Settings:
        path = (directory or config_dir()) / "settings.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable settings %s: %s", path, e)
            return cls()
        known = {f.name for f in fields(cls)}
        s = cls(**{k: v for k, v in raw.items() if k in known})
        s.window_size = tuple(int(v) for v in s.window_size)[:2]
        return s

    def save(self, directory: Path | None = None) -> None:
        d = directory or config_dir()
        try:
            d.mkdir(parents=True, exist_ok=True)
            with atomic_path(d / "settings.json") as tmp:
                tmp.write_text(json.dumps(asdict(self), indent=1))
        except OSError as e:
            log.warning("could not save settings in %s: %s", d, e)
