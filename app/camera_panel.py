"""Camera panel: numeric yaw/pitch/radius/FOV/pivot, reset to the training camera, snap views, and the
separate conditioning pose fed to the mapping network (the original default: frontal)."""
from __future__ import annotations

import math

from imgui_bundle import imgui

from app.imgui_utils import CLAMP, help_marker, hint
from app.panel import Panel
from app.state import AppState
from core.cameras import MAX_PITCH

SNAP_VIEWS = ("front", "left", "right", "top", "back")


def wrapped_degrees(angle: float) -> float:
    """An angle in radians as degrees in [-180, 180) (the orbit accumulates whole turns)."""
    return (math.degrees(angle) + 180.0) % 360.0 - 180.0


class CameraPanel(Panel):
    name = "Camera"
    label_em = 9.0

    def draw(self, state: AppState) -> None:
        cam = state.camera
        deg = math.degrees
        changed, yaw = imgui.drag_float("yaw", wrapped_degrees(cam.yaw), 0.5, -180.0, 180.0, "%.1f deg", CLAMP)
        if changed:
            cam.yaw = math.radians(yaw)
        changed, pitch = imgui.drag_float("pitch", deg(cam.pitch), 0.5, -deg(MAX_PITCH), deg(MAX_PITCH), "%.1f deg",
                                          CLAMP)
        if changed:
            cam.orbit(0.0, math.radians(pitch) - cam.pitch)
        changed, radius = imgui.drag_float("radius", cam.radius, 0.01, 0.1, 20.0, "%.3f", CLAMP)
        if changed:
            cam.dolly(math.log(cam.radius / max(radius, 1e-3)))
        changed, fov = imgui.slider_float("FOV", cam.fov_deg, 5.0, 60.0, "%.2f deg", CLAMP)
        if changed:
            cam.fov_deg = fov
        changed, pivot = imgui.drag_float3("look-at", list(cam.pivot), 0.005, -2.0, 2.0, "%.3f", CLAMP)
        if changed:
            cam.pivot = tuple(pivot)
        help_marker("Left-drag the view to orbit, right/middle-drag to pan, wheel to dolly. Values typed in "
                    "(Ctrl+click) are kept within the ranges.")
        options = state.model.options
        if imgui.button("Reset"):
            cam.reset(options)
        imgui.same_line()
        pivot = ", ".join(f"{c:g}" for c in options.avg_camera_pivot)
        hint(f"to radius {options.avg_camera_radius:g}, look-at ({pivot})")
        for i, view in enumerate(SNAP_VIEWS):
            if i:
                imgui.same_line()
            if imgui.button(view):
                cam.snap(view)
        imgui.separator_text("Conditioning pose")
        lat = state.latent
        changed, cond = imgui.drag_float2("yaw / pitch", [deg(lat.cond_yaw), deg(lat.cond_pitch)], 0.5,
                                          -90.0, 90.0, "%.1f deg", CLAMP)
        if changed:
            lat.cond_yaw, lat.cond_pitch = math.radians(cond[0]), math.radians(cond[1])
        if imgui.button("Frontal"):
            lat.cond_yaw = lat.cond_pitch = 0.0
        imgui.same_line()
        if imgui.button("Follow camera"):
            lat.cond_yaw, lat.cond_pitch = cam.yaw, cam.pitch
        help_marker("The camera the mapping network is conditioned on (frontal by default, as in the original).")
