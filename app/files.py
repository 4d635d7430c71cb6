"""Where the studio's files go, and the panels' file fields.

Relative names (the defaults: latent.npz, mesh.ply, orbit.mp4 ...) are in the per-user output folder
(~/TriplaneStudio unless chosen otherwise in the Export panel), never in whatever directory the studio
was started from. A file field is a text field with a "..." button that opens the system's file
dialog (portable-file-dialogs, which runs zenity, kdialog, matedialog or qarma on Linux, the native
dialog on Windows and macOS) without blocking the UI; where no dialog program exists (a headless
machine, CI under Xvfb) the button is left out and the text field is all there is.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
from pathlib import Path
from typing import Literal

from imgui_bundle import imgui

from app.imgui_utils import buttons_width

DIALOG_PROGRAMS = ("zenity", "kdialog", "matedialog", "qarma")
"""The programs portable-file-dialogs drives on Linux and the BSDs (it checks for them the same way)."""
BROWSE = "..."
_pending: set[FileField] = set()


def default_output_dir() -> Path:
    """The per-user folder for the studio's outputs when none was chosen."""
    return Path.home() / "TriplaneStudio"


def dialogs_available() -> bool:
    """True when portable-file-dialogs has a dialog to show on this machine."""
    return sys.platform in ("win32", "darwin") or _dialog_program_on(os.environ.get("PATH", ""))


@functools.lru_cache(maxsize=4)
def _dialog_program_on(search_path: str) -> bool:
    """A dialog program is on this PATH (looked up once per PATH value: file fields ask every frame)."""
    return any(shutil.which(p, path=search_path) for p in DIALOG_PROGRAMS)


def dialog_pending() -> bool:
    """A file dialog is open (the studio keeps polling it instead of sleeping on window events)."""
    return bool(_pending)


def poll_dialogs() -> None:
    """Collect the answers of open dialogs (once per frame, whether their panel is drawn or not)."""
    for field in list(_pending):
        field.poll()


def close_dialogs() -> None:
    """Close the dialogs still open (the studio is quitting)."""
    for field in list(_pending):
        field.close()


def resolve(text: str, folder: str | Path | None) -> Path:
    """The file a field's text names: absolute and ~ paths as given, relative ones inside `folder`
    (None: the current directory)."""
    path = Path(text.strip()).expanduser()
    if path.is_absolute() or folder is None:
        return path
    return Path(folder).expanduser() / path


def output_path(text: str, folder: str | Path) -> Path:
    """The file to write for a field's text: as `resolve`, and for a relative name the output folder
    (and any subfolder the name gives) is created first; failures are left to the writer to report."""
    path = resolve(text, folder)
    if not Path(text.strip()).expanduser().is_absolute():
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
    return path


def shown_folder(folder: str | Path) -> str:
    """The folder as a person reads it: ~ for the home directory."""
    path, home = Path(folder).expanduser(), Path.home()
    try:
        return str(Path("~") / path.relative_to(home))
    except ValueError:
        return str(path)


class FileField:
    """A path text field with a "..." button opening a file dialog (when the system has one).

    kind: 'open' (an existing file), 'save' (a new or existing file, confirmed before overwriting),
    'any' (a name to save or load by the buttons next to the field: no overwrite question) or 'folder'.
    Relative names are resolved in the output folder given to `draw`/`path` (None: as typed).
    """

    def __init__(self, text: str, kind: Literal["open", "save", "any", "folder"] = "save",
                 filters: tuple[str, ...] = (), title: str = "Choose a file"):
        self.text = text
        self.kind, self.filters, self.title = kind, list(filters) + ["All files", "*"], title
        self._dialog = None
        self._chosen = False
        self.rect = (0.0, 0.0, 0.0, 0.0)
        """(x0, y0, x1, y1) of the text field on screen when last drawn (tests type into it)."""
        self.entered = False
        """Enter was pressed in the field in the last `draw`."""

    def path(self, folder: str | Path | None) -> Path:
        return resolve(self.text, folder)

    def target(self, folder: str | Path) -> Path:
        """The path to write to (app.files.output_path)."""
        return output_path(self.text, folder)

    def take_chosen(self) -> bool:
        """True once after a dialog filled the field (panels may act on it, e.g. open the file)."""
        chosen, self._chosen = self._chosen, False
        return chosen

    def draw(self, label: str, folder: str | Path | None, width: float | None = None) -> None:
        """The field (`width` pixels with its button; default: the panel's field width), the "..."
        button, then the label; hovering the field shows the full path."""
        width = imgui.calc_item_width() if width is None else width
        browse = dialogs_available()
        imgui.set_next_item_width(width - (buttons_width(BROWSE) if browse else 0.0))
        self.entered, self.text = imgui.input_text(f"##{label}", self.text, imgui.InputTextFlags_.enter_returns_true)
        lo, hi = imgui.get_item_rect_min(), imgui.get_item_rect_max()
        self.rect = (lo.x, lo.y, hi.x, hi.y)
        if imgui.is_item_hovered() and self.text.strip():
            imgui.set_tooltip(str(self.path(folder)))
        if browse:
            imgui.same_line()
            if imgui.button(f"{BROWSE}##{label}") and self._dialog is None:
                self._start(folder)
            if imgui.is_item_hovered():
                imgui.set_tooltip("choose in a file dialog")
        visible = label.split("##")[0]
        if visible:
            imgui.same_line(0, imgui.get_style().item_inner_spacing.x)
            imgui.text(visible)

    def _start(self, folder: str | Path | None) -> None:
        from imgui_bundle import portable_file_dialogs as pfd
        start = self.path(folder) if self.text.strip() else resolve(".", folder)
        if folder is not None and self.kind != "open":
            try:   # the dialog starts in the output folder; one that cannot be made starts it elsewhere
                Path(folder).expanduser().mkdir(parents=True, exist_ok=True)
            except OSError:
                pass
        if self.kind == "open":
            self._dialog = pfd.open_file(self.title, str(start.parent if start.suffix else start), self.filters)
        elif self.kind == "folder":
            self._dialog = pfd.select_folder(self.title, str(start))
        else:
            options = pfd.opt.force_overwrite if self.kind == "any" else pfd.opt.none
            self._dialog = pfd.save_file(self.title, str(start), self.filters, options)
        _pending.add(self)

    def poll(self) -> None:
        """Take the dialog's answer when it has one (a cancelled dialog leaves the text as it was)."""
        if self._dialog is None or not self._dialog.ready(0):
            return
        result = self._dialog.result()
        self._dialog = None
        _pending.discard(self)
        chosen = result[0] if isinstance(result, list) and result else result
        if chosen:
            self.text, self._chosen = str(chosen), True

    def close(self) -> None:
        """Close a dialog still open (the studio is quitting)."""
        if self._dialog is not None:
            self._dialog.kill()
            self._dialog = None
        _pending.discard(self)
