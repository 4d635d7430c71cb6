"""Render panel: which image to show (SR, raw, depth, opacity), the depth view's settings (colour map,
near = bright, auto range, background mask), the raw|SR split compare, 1:1 pixels,
pixel probe, neural resolution, depth-sample multipliers (all, coarse, importance), backbone noise,
stochastic sampling, progressive refinement with an optional target frame rate, UI fps limit,
background and precision."""
from __future__ import annotations

from imgui_bundle import imgui

from app.imgui_utils import CLAMP, disabled, help_marker
from app.panel import Panel
from app.state import DEPTH_FORMAT, VIEW_MODES, AppState, ViewState
from core.engine import NOISE_MODES

MODE_LABELS = {"image": "SR image", "raw": "raw image", "depth": "depth", "opacity": "opacity"}
MODE_HELP = {"image": "the super-resolved output", "raw": "the neural rendering before super-resolution",
             "depth": "expected ray depth in scene units", "opacity": "accumulated opacity of each ray"}
SAMPLE_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
COLORMAPS = ("grey", "turbo", "diverging")


class RenderPanel(Panel):
    name = "Render"
    label_em = 10.5

    def draw(self, state: AppState) -> None:
        v = state.view
        for i, mode in enumerate(VIEW_MODES):
            if i:
                imgui.same_line()
            if imgui.radio_button(MODE_LABELS[mode], v.mode == mode):
                v.mode = mode
            self.note_item(f"mode:{mode}")
            if imgui.is_item_hovered():
                imgui.set_tooltip(MODE_HELP[mode])
        with disabled(v.mode != "image"):
            _, v.split = imgui.checkbox("split compare: raw | SR", v.split)
            help_marker("Drag the line in the view (or this slider) to move it.")
            if v.split:
                _, v.split_pos = imgui.slider_float("split", v.split_pos, 0.0, 1.0, "%.2f", CLAMP)
        if v.mode in ("depth", "opacity"):
            _, v.colormap = imgui.combo("colormap", v.colormap, COLORMAPS)
        if v.mode == "depth":
            self._depth(v)
        _, v.pixel_exact = imgui.checkbox("1:1 pixels", v.pixel_exact)
        help_marker("Show the frame with one texel per screen pixel (when it fits) instead of fitting the view.")
        imgui.same_line()
        _, v.probe = imgui.checkbox("pixel probe", v.probe)
        help_marker("Hover the image: depth (scene units), opacity and colour under the cursor.")
        imgui.separator_text("Quality")
        native = state.model.neural_resolution
        res = v.resolution or native
        changed, res = imgui.slider_int("neural res", res, 16, max(2 * native, 128), "%d px", CLAMP)
        if changed:
            v.resolution = 0 if res == native else res
        help_marker(f"Rays per side rendered by the volume renderer (checkpoint: {native}). "
                    "SR upsamples to the output resolution.")
        index = SAMPLE_SCALES.index(v.sample_scale) if v.sample_scale in SAMPLE_SCALES else 2
        _, index = imgui.combo("depth samples", index, [f"{s:g}x" for s in SAMPLE_SCALES])
        v.sample_scale = SAMPLE_SCALES[index]
        _, v.coarse_scale = imgui.drag_float("coarse samples", v.coarse_scale, 0.01, 0.05, 4.0, "%.2fx", CLAMP)
        help_marker("Multiplier on the coarse depth samples, on top of 'depth samples'.")
        _, v.importance_scale = imgui.drag_float("fine samples", v.importance_scale, 0.01, 0.0, 4.0, "%.2fx", CLAMP)
        help_marker("Multiplier on the importance (fine) depth samples, on top of 'depth samples' "
                    "(0 = no fine pass).")
        index = NOISE_MODES.index(v.noise_mode) if v.noise_mode in NOISE_MODES else 0
        _, index = imgui.combo("noise", index, NOISE_MODES)
        v.noise_mode = NOISE_MODES[index]
        help_marker("Backbone noise: const = the stored noise (as the original tools), random with a seed, or none.")
        if v.noise_mode == "random":
            _, v.noise_seed = imgui.drag_int("noise seed", v.noise_seed, 0.2, 0, 2**31 - 1, "%d", CLAMP)
        _, v.stochastic = imgui.checkbox("stochastic sampling", v.stochastic)
        help_marker("Jittered depth samples as in training (noisy); off = deterministic.")
        _, v.progressive = imgui.checkbox("progressive refinement", v.progressive)
        help_marker("While dragging, render raw at reduced resolution and samples (never below 48 px "
                    "and 0.5x), then raw at full resolution, then SR once input stops.")
        _, v.target_fps = imgui.slider_float("moving fps", v.target_fps, 0.0, 60.0,
                                             "off" if v.target_fps <= 0 else "%.0f fps", CLAMP)
        help_marker("Dynamic resolution: while you drag, the preview's resolution and samples adapt to this "
                    "frame rate (never below 48 px and 0.5x); at rest it refines to full quality.")
        _, v.max_fps = imgui.slider_float("UI fps limit", v.max_fps, 5.0, 240.0, "%.0f fps", CLAMP)
        _, bg = imgui.color_edit3("background", list(v.background))
        v.background = tuple(bg)
        if imgui.radio_button("float32", v.precision == "fp32"):
            v.precision = "fp32"
        imgui.same_line()
        if imgui.radio_button("bfloat16", v.precision == "bf16"):
            v.precision = "bf16"
        help_marker(f"float32 matches the original exactly; bfloat16 autocast is faster on recent CPUs "
                    f"and GPUs but not exact. Device: {state.perf.device}.")

    def _depth(self, v: ViewState) -> None:
        """Depth view settings; near/far show the range the colour map spans (the automatic one while
        'auto range' is on, which they then start from when it is turned off)."""
        _, v.depth_near_bright = imgui.checkbox("near = bright", v.depth_near_bright)
        imgui.same_line()
        changed, v.depth_auto = imgui.checkbox("auto range", v.depth_auto)
        if changed and not v.depth_auto and v.depth_shown is not None:
            v.depth_range = v.depth_shown
        _, v.depth_mask = imgui.checkbox("mask background", v.depth_mask)
        self.note_item("depth_mask")
        help_marker("Texels of opacity below 0.5 are background: drawn as far and left out of the auto "
                    "range. Off: every texel's depth, to look at floaters.")
        shown = v.depth_shown if v.depth_auto and v.depth_shown is not None else v.depth_range
        with disabled(v.depth_auto):
            changed, (near, far) = imgui.drag_float2("near/far", list(shown), 0.01, 0.0, 100.0, DEPTH_FORMAT,
                                                     CLAMP)
            self.note_item("near/far")
        if changed and not v.depth_auto:
            v.depth_range = (min(near, far), max(near, far))
        help_marker("Scene units along the ray, as the colour bar under the view.")
