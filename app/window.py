"""The studio window: GLFW + OpenGL 3.3 core context + ImGui/ImPlot contexts + the pure-Python backend.

No display (or a GLFW failure) becomes one StudioError line pointing at the headless commands, never a
GLFW stack trace. glfw is imported before imgui_bundle so that one GLFW library is used.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import glfw  # before imgui_bundle (platform-notes)
from imgui_bundle import imgui, implot
from imgui_bundle.python_backends.glfw_backend import GlfwRenderer

from app.layout import fit_to_workarea
from core.errors import StudioError

HEADLESS_HINT = "use the headless commands: python main.py render|video|mesh"


def check_display() -> None:
    """Raise the one-line no-display StudioError before anything touches GLFW or OpenGL."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise StudioError(f"no display: DISPLAY is not set (run under X11/Wayland or xvfb-run), or {HEADLESS_HINT}")


class Window:
    """Owns the GLFW window, the GL context and the ImGui backend; one per process."""

    def __init__(self, title: str, size: tuple[int, int] | None, ini_path: Path | None, visible: bool = True):
        """`size`: the client area wanted (None: most of the screen); the window is fitted to the work
        area of the screen it opens on, decorations included."""
        check_display()
        glfw.ERROR_REPORTING = "raise"
        try:
            if not glfw.init():
                raise StudioError(f"no display: GLFW could not initialise, {HEADLESS_HINT}")
            glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
            glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
            glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
            glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
            glfw.window_hint(glfw.VISIBLE, False)
            workarea = self._workarea()
            _, _, w, h = fit_to_workarea(size, workarea)
            self.handle = glfw.create_window(w, h, title, None, None)
        except glfw.GLFWError as e:
            glfw.terminate()
            raise StudioError(f"no display: {e} ({HEADLESS_HINT})") from None
        if not self.handle:
            glfw.terminate()
            raise StudioError(f"no display: could not open an OpenGL 3.3 window, {HEADLESS_HINT}")
        glfw.ERROR_REPORTING = "warn"
        x, y, w, h = fit_to_workarea(size, workarea, glfw.get_window_frame_size(self.handle))
        glfw.set_window_size(self.handle, w, h)
        glfw.set_window_pos(self.handle, x, y)
        if visible:
            glfw.show_window(self.handle)
        glfw.make_context_current(self.handle)
        glfw.swap_interval(1)
        imgui.create_context()
        implot.create_context()
        io = imgui.get_io()
        io.config_flags |= imgui.ConfigFlags_.docking_enable
        io.set_ini_filename(str(ini_path) if ini_path else "")
        self._ini_path = ini_path
        self.backend = GlfwRenderer(self.handle)
        self.dropped: list[str] = []
        self.events = 0
        """Count of input and window events received (the idle loop redraws only when it changes)."""
        glfw.set_drop_callback(self.handle, self._on_drop)
        self._count_events()

    @staticmethod
    def _workarea() -> tuple[int, int, int, int]:
        """(x, y, width, height) of the primary screen's work area (without panels and docks)."""
        monitor = glfw.get_primary_monitor()
        if monitor:
            x, y, w, h = glfw.get_monitor_workarea(monitor)
            if w > 0 and h > 0:
                return x, y, w, h
        return 0, 0, 1440, 900

    def _on_drop(self, _window, paths) -> None:
        self.dropped.extend(paths)
        self.events += 1

    def _count_events(self) -> None:
        """Wrap the backend's GLFW callbacks so that every event also bumps `events`."""
        setters = (glfw.set_cursor_pos_callback, glfw.set_mouse_button_callback, glfw.set_scroll_callback,
                   glfw.set_key_callback, glfw.set_char_callback, glfw.set_window_size_callback,
                   glfw.set_framebuffer_size_callback, glfw.set_window_focus_callback,
                   glfw.set_cursor_enter_callback, glfw.set_window_refresh_callback)
        for setter in setters:
            previous = setter(self.handle, None)
            setter(self.handle, self._counting(previous))

    def _counting(self, previous: Callable | None) -> Callable:
        def callback(*args) -> None:
            self.events += 1
            if previous is not None:
                previous(*args)
        return callback

    def should_close(self) -> bool:
        return bool(glfw.window_should_close(self.handle))

    def begin_frame(self) -> None:
        glfw.poll_events()
        self.backend.process_inputs()
        imgui.new_frame()

    def input_pending(self) -> bool:
        """ImGui still holds queued input: it applies at most one change per key or button per frame
        ("trickling", so a press and release in one frame both count), so a burst of typing received in
        one poll needs one ImGui frame per character."""
        return len(imgui.get_current_context().input_events_queue) > 0

    def next_pass(self) -> None:
        """End the current ImGui frame without drawing it and start another on the queued input (cheap:
        no GL drawing, no swap; the studio runs these until the queue is empty)."""
        imgui.end_frame()
        self.backend.process_inputs()
        imgui.new_frame()

    def wait_events(self, timeout: float) -> None:
        """Sleep until an event arrives or `timeout` seconds pass (the idle loop)."""
        glfw.wait_events_timeout(timeout)

    def end_frame(self, before_swap: Callable[[], None] | None = None) -> None:
        """Render ImGui into the back buffer, run `before_swap` (screenshots read GL_BACK), swap."""
        from OpenGL import GL as gl
        imgui.render()
        w, h = glfw.get_framebuffer_size(self.handle)
        gl.glViewport(0, 0, w, h)
        gl.glClearColor(0.09, 0.09, 0.1, 1.0)
        gl.glClear(gl.GL_COLOR_BUFFER_BIT)
        self.backend.render(imgui.get_draw_data())
        if before_swap is not None:
            before_swap()
        glfw.swap_buffers(self.handle)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(glfw.get_window_size(self.handle))

    @property
    def framebuffer_size(self) -> tuple[int, int]:
        return tuple(glfw.get_framebuffer_size(self.handle))

    def take_dropped(self) -> list[str]:
        paths, self.dropped = self.dropped, []
        return paths

    def close(self) -> None:
        """Save the layout, release the backend and contexts, and terminate GLFW."""
        if self._ini_path:
            self._ini_path.parent.mkdir(parents=True, exist_ok=True)
            imgui.save_ini_settings_to_disk(str(self._ini_path))
        self.backend.shutdown()
        implot.destroy_context()
        imgui.destroy_context()
        glfw.destroy_window(self.handle)
        glfw.terminate()
