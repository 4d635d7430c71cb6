"""The folder a server exposes: clients name files in it by relative path, and nothing outside it.

Paths are checked as text first (relative, no `..`, no backslash or drive, no control characters), then
resolved with symlinks followed and checked again, so a link inside the folder cannot lead out of it.
Checkpoints are opened from anywhere below the root; job outputs are written only below `exports/`.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from remote.protocol import FieldError

EXPORTS = "exports"
"""Subfolder of the root that jobs write to and clients download from."""
MAX_LISTED = 2000


class ServedRoot:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve(strict=True)
        self.exports = self.root / EXPORTS

    def _clean(self, name: object, what: str) -> PurePosixPath:
        """The relative path in `name`, refused when it could point anywhere but below the root."""
        if not isinstance(name, str) or not name or len(name) > 1024 or not name.isprintable():
            raise FieldError(f"{what} must be a relative path of at most 1024 printable characters")
        p = PurePosixPath(name)
        if p.is_absolute() or "\\" in name or ":" in p.parts[0] or any(part == ".." for part in p.parts):
            raise FieldError(f"{what} {name!r} must be relative to the served folder, without '..'")
        return p

    def _inside(self, path: Path, base: Path, name: str, what: str) -> Path:
        if not path.is_relative_to(base):
            raise FieldError(f"{what} {name!r} leads outside the served folder")
        return path

    def existing(self, name: object, what: str = "path") -> Path:
        """A file or directory below the root (symlinks resolved and checked)."""
        rel = self._clean(name, what)
        path = (self.root / rel).resolve()
        self._inside(path, self.root, str(rel), what)
        if not path.exists():
            raise FieldError(f"{what} {str(rel)!r}: no such file in the served folder")
        return path

    def export_target(self, name: object, suffixes: tuple[str, ...]) -> Path:
        """Where a job may write `name`: below exports/ (created), ending in one of `suffixes`."""
        rel = self._clean(name, "output file")
        if rel.suffix.lower() not in suffixes:
            raise FieldError(f"output file {str(rel)!r} must end in {', '.join(suffixes)}")
        self.exports.mkdir(exist_ok=True)
        folder = self._inside(self.exports.resolve(), self.root, EXPORTS, "exports folder")
        for part in rel.parts[:-1]:  # one level at a time: a link met on the way must stay inside
            step = folder / part
            if not os.path.lexists(step):
                step.mkdir()
            folder = self._inside(step.resolve(), self.exports.resolve(), str(rel), "output file")
            if not folder.is_dir():
                raise FieldError(f"output file {str(rel)!r}: {part} is not a folder")
        path = folder / rel.name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise FieldError(f"output file {str(rel)!r} exists and is not a regular file")
        return path

    def export_file(self, name: object) -> Path:
        """An existing regular file below exports/ (for downloads)."""
        rel = self._clean(name, "download")
        path = (self.exports / rel).resolve()
        self._inside(path, self.exports.resolve(), str(rel), "download")
        if not path.is_file():
            raise FieldError(f"download {str(rel)!r}: no such file in {EXPORTS}/")
        return path

    def relative(self, path: Path) -> str:
        """`path` as the clients name it (relative to the root, '/' separated)."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    def listing(self, what: str, suffixes: tuple[str, ...]) -> list[str]:
        """Relative paths of the files with `suffixes` below the root ('models') or exports/ ('exports'),
        sorted, at most MAX_LISTED; hidden entries and symlinks leading out are left out."""
        base = self.root if what == "models" else self.exports
        out: list[str] = []
        if not base.is_dir():
            return out
        for folder, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                if f.startswith(".") or Path(f).suffix.lower() not in suffixes:
                    continue
                path = Path(folder, f)
                if path.resolve().is_relative_to(self.root) and path.is_file():
                    out.append(path.relative_to(base).as_posix())
                if len(out) >= MAX_LISTED:
                    return out
        return out
