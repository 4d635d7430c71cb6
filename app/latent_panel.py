"""Latent panel: seed browsing and animation, truncation, interpolation, style mixing, W-space
principal directions, and save/load of the current latent (latent.npz, core.latents' format)."""
from __future__ import annotations

import json
from pathlib import Path

from imgui_bundle import imgui

from app.actions import ComputePCA, SaveLatent
from app.files import FileField, shown_folder
from app.imgui_utils import CLAMP, disabled, em, help_marker, hint, item_width, outcome_line
from app.panel import Panel
from app.state import AppState, LatentState, default_mix_layers
from core.errors import StudioError
from core.latents import load_latent

NUM_DIRECTIONS = 8
MAX_SEED = 2**31 - 1
SAVED_FIELDS = ("seed", "psi", "cutoff", "interp_enabled", "interp_seed", "interp_t", "mix_enabled",
                "mix_seed", "mix_layers", "directions", "direction_layers", "cond_yaw", "cond_pitch")


def latent_settings(latent: LatentState) -> dict:
    """The LatentState fields a saved latent keeps (plain values, a copy)."""
    return json.loads(json.dumps({k: getattr(latent, k) for k in SAVED_FIELDS}))


def restore_settings(path: Path, latent: LatentState) -> None:
    """Restore the settings of a latent saved by the studio (core.latents format; the ws are re-derived)."""
    settings = load_latent(path).settings
    if not any(key in settings for key in SAVED_FIELDS):
        raise StudioError(f"{path} holds no seed settings (an inverted latent?): render it with "
                          "`main.py render --latent`")
    for key in SAVED_FIELDS:
        if key in settings:
            value = settings[key]
            setattr(latent, key, tuple(value) if key == "direction_layers" else value)


class LatentPanel(Panel):
    name = "Latent"

    def __init__(self) -> None:
        super().__init__()
        self.file = FileField("latent.npz", "any", ("Latent (.npz)", "*.npz"), "Latent file")
        self.loaded: tuple[str, bool] = ("", False)
        """How the last Load ended (message, is an error)."""

    def draw(self, state: AppState) -> None:
        lat, num_ws = state.latent, state.model.num_ws
        if lat.source is not None:
            imgui.text_colored(imgui.ImVec4(0.5, 0.85, 1.0, 1.0), "Source: the inverted latent (Invert panel)")
            help_marker("Seeds, truncation, interpolation and mixing do not apply to it; W directions do.")
            if imgui.button("Back to seeds"):
                lat.source = None
            self.note_item("seeds")
            imgui.separator()
        with disabled(lat.source is not None):
            self._seed(state)
            changed, lat.psi = imgui.slider_float("psi", lat.psi, -1.0, 2.0, "%.2f", CLAMP)
            self._touch_if_active(state)
            changed, lat.cutoff = imgui.slider_int("cutoff", lat.cutoff, 0, max(num_ws, 1),
                                                   "none" if lat.cutoff == 0 else "%d", CLAMP)
            help_marker("Truncation applies to ws[:cutoff] (none = all).")
            if imgui.collapsing_header("Interpolation"):
                _, lat.interp_enabled = imgui.checkbox("interpolate to seed", lat.interp_enabled)
                with disabled(not lat.interp_enabled):
                    _, lat.interp_seed = imgui.drag_int("second seed", lat.interp_seed, 0.05, 0, MAX_SEED, "%d", CLAMP)
                    _, lat.interp_t = imgui.slider_float("t", lat.interp_t, 0.0, 1.0, "%.3f", CLAMP)
                    self._touch_if_active(state)
            if imgui.collapsing_header("Style mixing"):
                self._style_mixing(lat, num_ws)
        if imgui.collapsing_header("W directions (PCA)"):
            self._directions(state, lat, num_ws)
        if imgui.collapsing_header("Save / load"):
            with disabled(lat.source is not None):   # the Invert panel saves an inverted latent
                self._save_load(state)

    def _touch_if_active(self, state: AppState) -> None:
        if imgui.is_item_active():
            state.interaction.touch()

    def _seed(self, state: AppState) -> None:
        lat = state.latent
        with item_width(em(8)):
            changed, seed = imgui.drag_int("seed", lat.seed, 0.05, 0, MAX_SEED, "%d", CLAMP)
        if changed:
            lat.seed = seed
            lat.animate = False
        self._touch_if_active(state)
        imgui.same_line()
        if imgui.arrow_button("##prev", imgui.Dir.left):
            lat.seed = max(lat.seed - 1, 0)
        imgui.same_line()
        if imgui.arrow_button("##next", imgui.Dir.right):
            lat.seed += 1
        imgui.same_line()
        _, lat.animate = imgui.checkbox("animate", lat.animate)
        if lat.animate:
            with item_width(em(8)):
                _, lat.speed = imgui.slider_float("seeds/s", lat.speed, 0.05, 5.0, "%.2f", CLAMP)

    def _style_mixing(self, lat: LatentState, num_ws: int) -> None:
        _, lat.mix_enabled = imgui.checkbox("enable##mix", lat.mix_enabled)
        imgui.same_line()
        with item_width(em(8)):
            _, lat.mix_seed = imgui.drag_int("mix seed", lat.mix_seed, 0.05, 0, MAX_SEED, "%d", CLAMP)
        if len(lat.mix_layers) != num_ws:
            lat.mix_layers = default_mix_layers(num_ws)
        imgui.text_disabled("ws taken from the mix seed:")
        for i in range(num_ws):
            if i % 7:
                imgui.same_line()
            _, lat.mix_layers[i] = imgui.checkbox(f"{i}##w", lat.mix_layers[i])

    def _directions(self, state: AppState, lat: LatentState, num_ws: int) -> None:
        if len(lat.directions) != NUM_DIRECTIONS:
            lat.directions = [0.0] * NUM_DIRECTIONS
        hint("Principal components of W (computed once per model).")
        if not state.pca_ready:
            with disabled(state.job.running or state.model.path is None):
                if imgui.button("Compute directions"):
                    state.actions.append(ComputePCA())
            hint("Or move a slider: they are computed on first use.")
        for k in range(NUM_DIRECTIONS):
            _, lat.directions[k] = imgui.slider_float(f"PC {k}", lat.directions[k], -5.0, 5.0, "%.2f sd", CLAMP)
            self._touch_if_active(state)
        lo, hi = lat.direction_layers
        if hi <= lo:
            lo, hi = 0, num_ws
        _, (lo, hi) = imgui.drag_int2("ws range", [lo, hi], 0.1, 0, num_ws, "%d", CLAMP)
        lat.direction_layers = (min(lo, hi), max(lo, hi))
        if imgui.button("Zero all"):
            lat.directions = [0.0] * NUM_DIRECTIONS

    def _save_load(self, state: AppState) -> None:
        lat = state.latent
        self.file.draw(".npz file", state.output_dir)
        hint(f"Names without a folder are in {shown_folder(state.output_dir)}.")
        with disabled(state.model.path is None):
            if imgui.button("Save"):
                self.save(state)
        imgui.same_line()
        if imgui.button("Load"):
            self.load(state)
        imgui.same_line()
        if imgui.button("Copy seed/psi"):
            imgui.set_clipboard_text(f"--seeds {lat.seed} --trunc {lat.psi:.2f}")
        if state.job.outcome_of == SaveLatent.__name__ and not state.job.running:
            outcome_line(state.job.outcome, state.job.outcome_error)
        outcome_line(*self.loaded)

    def save(self, state: AppState) -> None:
        """Save the on-screen latent (ws, the view's camera and the settings) to the field's file."""
        lat = state.latent
        state.actions.append(SaveLatent(self.file.target(state.output_dir), latent_settings(lat), lat.latent(),
                                        tuple(state.camera.label()[0].tolist())))

    def load(self, state: AppState) -> None:
        """Restore the seed settings saved in the field's file."""
        path = self.file.path(state.output_dir)
        try:
            restore_settings(path, state.latent)
            state.latent.fit_to_model(state.model.num_ws, same_architecture=True)
            self.loaded = (f"loaded latent {path}", False)
        except StudioError as e:
            self.loaded = (str(e), True)
        state.set_status(*self.loaded)
