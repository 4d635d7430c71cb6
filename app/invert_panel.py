"""Invert panel: one image -> latent (and tuned weights) of the loaded model, watched live, then orbited
in the viewport. A view of AppState.invert; the work is app.inversion's (through actions).

Open an image by path or drop it on the window; the panel shows the prepared target (what was done to
it; "frame the object" re-frames a casual photo as `invert --frame` does), the camera (the viewport's,
yaw/pitch as for `render`, or estimated), the settings and the loss the run will use. With the camera
estimated, Estimate camera runs the estimate first and shows the model at that view beside the target,
with sliders to correct it by hand; Start then inverts at that camera as given. Start runs the inversion
off the UI thread with its loss curve and best reconstruction shown as they improve; Stop keeps the best
result so far. The result then becomes the viewport's latent (the Latent panel offers going back to the
seeds), and can be saved as latent.npz (the format of `main.py invert`, read by `render/video/mesh
--latent`) and, after pivotal tuning, as a checkpoint.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
from imgui_bundle import imgui, implot

from app.actions import (
    INVERT_CAMERAS,
    CancelInvertCamera,
    EstimateInvertCamera,
    OpenInvertImage,
    PreviewInvertView,
    SaveInversion,
    StartInversion,
    StopInversion,
)
from app.files import FileField, shown_folder
from app.gl import Texture, texture_ref
from app.imgui_utils import CLAMP, buttons_width, disabled, em, help_marker, hint, info_table
from app.panel import Panel
from app.state import AppState
from training.inversion import InversionOptions

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
"""Dropped files with these suffixes go to the Invert panel; anything else is opened as a model."""
CAMERA_LABELS = ["viewport camera", "yaw / pitch", "estimate"]
SPACES = ["w", "w+"]
DEFAULT_FRAME = 0.64
"""Object size for re-framed photos: the default model's toys, median of their training framing."""


def is_image_path(path: str) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


class InvertPanel(Panel):
    name = "Invert"
    label_em = 11.0

    def __init__(self) -> None:
        super().__init__()
        self.image = FileField("", "open", ("Images", " ".join(f"*{x}" for x in IMAGE_SUFFIXES)), "Image to invert")
        self._seen_image = ""
        self.camera = 0
        """Index into INVERT_CAMERAS."""
        self.yaw_deg, self.pitch_deg = 0.0, 0.0
        """The camera of 'yaw / pitch', and of 'estimate' once estimated (then corrected by hand)."""
        self.frame_on, self.frame = False, DEFAULT_FRAME
        """Re-frame the image as a casual photo (core.latents.frame_object) with the object this big."""
        self._estimate_seen = 0
        self.camera_search = None
        """Estimate camera's settings (training.camera_estimate.CameraSearch; None: the estimator's defaults)."""
        self.steps, self.space, self.tune_steps, self.refine_steps = 300, 0, 0, 25
        self.symmetry = InversionOptions.symmetry_weight
        self.latent_file = FileField("latent.npz", "save", ("Latent (.npz)", "*.npz"), "Save the latent")
        self.tuned_file = FileField("tuned.ckpt", "save", ("Checkpoint (.ckpt)", "*.ckpt"), "Save the tuned model")
        self.target_tex, self.preview_tex, self.view_tex = Texture(), Texture(), Texture()
        self._target_shown: np.ndarray | None = None
        self._preview_version = self._view_version = -1
        self._was_running = False

    # ---- drawing ------------------------------------------------------------------------------------
    def draw(self, state: AppState) -> None:
        inv = state.invert
        if inv.image != self._seen_image:   # opened by a drop: show its path here
            self.image.text = self._seen_image = inv.image
        self._image_row(state)
        with disabled(inv.running):
            self._frame_row(state)
        self._images(state)
        if imgui.collapsing_header("Camera and settings", imgui.TreeNodeFlags_.default_open):
            with disabled(inv.running):
                self._settings(state)
        self._run_controls(state)
        self._loss_plot(state)
        self._result(state)

    @property
    def path_text(self) -> str:
        """The image path as typed (relative: to the folder the studio was started in)."""
        return self.image.text

    @path_text.setter
    def path_text(self, text: str) -> None:
        self.image.text = text

    def _image_row(self, state: AppState) -> None:
        self.image.draw("##image", None, imgui.get_content_region_avail().x - buttons_width("Open", "(?)"))
        self.item_rects["image"] = self.image.rect
        imgui.same_line()
        chosen = self.image.take_chosen()
        with disabled(not self.path_text.strip() or state.model.path is None):
            if imgui.button("Open##image") or self.image.entered or chosen and state.model.path is not None:
                self.open_image(state, self.path_text.strip())
        help_marker("The image to invert; an image file (png, jpg, webp, bmp) dropped on the window opens "
                    "here. It is centre-cropped to a square and resized to the model's output size, and "
                    "transparency is composited on the model's background.")

    @property
    def frame_fraction(self) -> float | None:
        """The re-framing the panel asks for (None: off)."""
        return float(self.frame) if self.frame_on else None

    def _frame_row(self, state: AppState) -> None:
        changed, self.frame_on = imgui.checkbox("frame the object", self.frame_on)
        self.note_item("frame")
        imgui.same_line()
        with disabled(not self.frame_on):
            imgui.set_next_item_width(em(6))
            _, self.frame = imgui.drag_float("of the frame##fraction", self.frame, 0.005, 0.05, 1.0, "%.2f", CLAMP)
            edited = imgui.is_item_deactivated_after_edit()   # let go or typed: not every frame of a drag
        help_marker("For a casual photo of one object on a plain backdrop: the backdrop (the colour of the "
                    "photo's border) becomes the model's background, and the object is centred and scaled so "
                    f"that its larger side is this fraction of the frame ({DEFAULT_FRAME} for the default "
                    "model: its training framing). What was done is said under the target.")
        path = self.path_text.strip()
        if (changed or edited) and path and state.model.path is not None:
            self.open_image(state, path)   # show the target as it will be inverted

    def _checking(self, state: AppState) -> bool:
        """The camera check is shown: camera 'estimate' with an estimate for the target."""
        return INVERT_CAMERAS[self.camera] == "estimate" and state.invert.estimate is not None

    def _images(self, state: AppState) -> None:
        """The target, the model at the checked camera (camera 'estimate' once estimated) and the best
        reconstruction, side by side."""
        inv = state.invert
        if inv.target is not self._target_shown:
            self._target_shown = inv.target
            if inv.target is not None:
                self.target_tex.upload(inv.target)
        if inv.preview is None:
            self._preview_version = -1
        elif inv.preview_version != self._preview_version:
            self._preview_version = inv.preview_version
            self.preview_tex.upload(inv.preview)
        if inv.view is not None and inv.view_version != self._view_version:
            self._view_version = inv.view_version
            self.view_tex.upload(inv.view)
        shown = [(self.target_tex, "target", "target", inv.target is not None),
                 (self.view_tex, "mean w at this camera", "view", self._checking(state) and inv.view is not None),
                 (self.preview_tex, "best reconstruction" + (" so far" if inv.running else ""), "preview",
                  inv.preview is not None)]
        shown = [item for item in shown if item[3]]
        style = imgui.get_style()
        side = min(em(8), max((imgui.get_content_region_avail().x - (len(shown) - 1) * style.item_spacing.x)
                              / max(len(shown), 2), em(3)))
        for i, (tex, label, key, _) in enumerate(shown):
            if i:
                imgui.same_line()
            imgui.begin_group()
            imgui.image(texture_ref(tex.id), imgui.ImVec2(side, side))
            self.note_item(key)
            imgui.text_disabled(label)
            imgui.end_group()
        if inv.target_info:
            imgui.text_wrapped(inv.target_info)

    def _camera_check(self, state: AppState) -> None:
        """'estimate': the Estimate button (a job); once estimated, the model at that camera is shown next
        to the target (above) with sliders here to correct it; Start then inverts at that camera as given."""
        inv = state.invert
        if inv.estimating:
            if imgui.button("Cancel##estimate"):
                state.actions.append(CancelInvertCamera())
            self.note_item("cancel estimate")
            imgui.same_line()
            imgui.progress_bar(inv.estimate_fraction, imgui.ImVec2(-1, 0), inv.estimate_message or "starting")
        else:
            ready = state.model.path is not None and bool(self.path_text.strip())
            with disabled(not ready):
                if imgui.button("Estimate camera"):
                    self.estimate(state)
            self.note_item("estimate")
            help_marker("Searches the view that explains the image (training.camera_estimate; a minute or more "
                        "on a CPU), then shows the model (its mean w) at that view next to the target: correct "
                        "yaw and pitch by hand where they differ, and Start inverts at that camera as given. "
                        "Without an estimate, Start searches the camera itself (the two step counts below).")
        if inv.estimate is None:
            return
        self._take_estimate(state)
        moved_yaw, self.yaw_deg = imgui.slider_float("yaw##check", self.yaw_deg, -180.0, 180.0, "%.1f deg", CLAMP)
        self.note_item("check yaw")
        moved_pitch, self.pitch_deg = imgui.slider_float("pitch##check", self.pitch_deg, -85.0, 85.0, "%.1f deg",
                                                         CLAMP)
        self.note_item("check pitch")
        help_marker("Degrees as for `main.py render` (pitch > 0 looks from below). The model's view above "
                    "re-renders as you move them.")
        from training.camera_estimate import pitch_to_elevation
        elevation = pitch_to_elevation(math.radians(self.pitch_deg))
        imgui.text_disabled(f"elevation {elevation:+.1f} deg, seen from {'above' if elevation >= 0 else 'below'}")
        est_yaw, est_pitch = inv.estimate
        with disabled((self.yaw_deg, self.pitch_deg) == inv.estimate):
            if imgui.button("Back to the estimate"):
                self.yaw_deg, self.pitch_deg = inv.estimate
                moved_yaw = True
        self.note_item("back to estimate")
        imgui.same_line()
        hint(f"yaw {est_yaw:+.1f}, pitch {est_pitch:+.1f}")
        if moved_yaw or moved_pitch:
            self.preview_view(state)
        hint("Start inverts at this camera, as given.")

    def _take_estimate(self, state: AppState) -> None:
        """A new estimate: the sliders start there."""
        inv = state.invert
        if inv.estimate is not None and inv.estimate_version != self._estimate_seen:
            self._estimate_seen = inv.estimate_version
            self.yaw_deg, self.pitch_deg = inv.estimate

    def _settings(self, state: AppState) -> None:
        _, self.camera = imgui.combo("camera", self.camera, CAMERA_LABELS)
        help_marker("viewport camera: the view on screen now; yaw / pitch: degrees from the frontal camera, "
                    "as for `main.py render` (pitch > 0 looks from below); estimate: Estimate camera shows the "
                    "estimated view to check and correct before Start; without it, Start estimates the camera "
                    "first (a grid of views from a bank of latents, then fixed-camera fits around the best; "
                    "minutes on a CPU) and inverts at that view.")
        if INVERT_CAMERAS[self.camera] == "angles":
            _, self.yaw_deg = imgui.drag_float("yaw##deg", self.yaw_deg, 0.5, -180.0, 180.0, "%.1f deg", CLAMP)
            _, self.pitch_deg = imgui.drag_float("pitch##deg", self.pitch_deg, 0.5, -85.0, 85.0, "%.1f deg", CLAMP)
        elif INVERT_CAMERAS[self.camera] == "estimate":
            self._camera_check(state)
        if INVERT_CAMERAS[self.camera] == "estimate" and state.invert.estimate is None:
            _, self.refine_steps = imgui.drag_int("steps/view", self.refine_steps, 1.0, 0, 10_000, "%d", CLAMP)
            help_marker("Each view the camera estimate's fine search scores gets a W fit of this many steps "
                        "with the camera held fixed (0 = the best coarse grid view as is: faster, less exact).")
        _, self.steps = imgui.drag_int("steps", self.steps, 1.0, 1, 100_000, "%d", CLAMP)
        _, self.space = imgui.combo("space", self.space, SPACES)
        help_marker("w: one w for all layers; w+: W first (half the steps), then one w per layer.")
        _, self.tune_steps = imgui.drag_int("tune steps", self.tune_steps, 1.0, 0, 100_000, "%d", CLAMP)
        help_marker("Pivotal tuning (PTI) after the projection: fine-tunes the generator's weights around the "
                    "inverted latent (0 = none; 150 after a w+ projection: about 30 dB on toys the default model "
                    "never made). The tuned weights can be saved as a checkpoint.")
        _, self.symmetry = imgui.drag_float("mirror prior", self.symmetry, 0.05, 0.0, 1000.0, "%.2f", CLAMP)
        help_marker("For objects symmetric about the model's x=0 plane (faces, the default model's toys): from "
                    "the mirrored camera the silhouette must be the image's, flipped; pivotal tuning weighs that "
                    "and shapes the unseen side better (0 = off, for asymmetric objects).")
        loss = state.invert.loss_name or "known once an image is opened (discriminator features if the " \
                                         "checkpoint stores a discriminator, else pixels only)"
        imgui.text_wrapped(f"loss: {loss}")

    def _run_controls(self, state: AppState) -> None:
        inv = state.invert
        ready = state.model.path is not None and bool(self.path_text.strip())
        with disabled(inv.running or inv.estimating or not ready):
            if imgui.button("Start"):
                self.start(state)
        self.note_item("start")
        imgui.same_line()
        with disabled(not inv.running):
            if imgui.button("Stop"):
                self.stop(state)
        self.note_item("stop")
        if inv.running:
            imgui.same_line()
            imgui.progress_bar(inv.fraction, imgui.ImVec2(-1, 0), inv.message or "starting")

    def _loss_plot(self, state: AppState) -> None:
        losses = state.invert.losses
        if not losses:
            return
        auto = implot.AxisFlags_.auto_fit
        imgui.separator_text("Image loss per step")
        if not implot.begin_plot("##loss", imgui.ImVec2(-1, em(14)), implot.Flags_.no_title):
            return
        try:
            implot.setup_axes("", "", auto, auto)
            implot.setup_legend(implot.Location_.north, implot.LegendFlags_.horizontal | implot.LegendFlags_.outside)
            ys = np.asarray([loss for _, loss in losses], np.float64)
            xs = np.arange(len(ys), dtype=np.float64)
            for phase in dict.fromkeys(p.split(" ")[0] for p, _ in losses):   # camera search, w, w+, tune
                mask = np.asarray([p.split(" ")[0] == phase for p, _ in losses])
                implot.plot_line(phase, np.ascontiguousarray(xs[mask]), np.ascontiguousarray(ys[mask]))
        finally:
            implot.end_plot()

    def _result(self, state: AppState) -> None:
        r = state.invert.result
        if r is None:
            return
        imgui.separator()
        info_table([("camera", f"yaw {r['yaw_deg']:+.1f} deg, pitch {r['pitch_deg']:+.1f} deg, "
                               f"fov {r['fov_deg']:.2f} deg ({CAMERA_LABELS[INVERT_CAMERAS.index(r['camera'])]})"),
                    ("image loss", f"{r['loss']:.5f} (best of {r['steps']} steps"
                                   + (" after a camera estimate" if r["estimated"] else "")
                                   + ")"
                                   + (f", then {r['tune_steps']} tuning steps" if r["tune_steps"] else "")
                                   + (" (stopped early)" if r["interrupted"] else "")),
                    ("weights", "tuned (PTI)" if r["tuned"] else "the model's, with the inverted noise maps"),
                    ("image", r["prepared"])],
                   "invert-result")
        lat = state.latent
        if lat.source == r["name"]:
            imgui.text_disabled("The viewport shows the result: orbit it there.")
            if imgui.button("Back to seeds"):
                lat.source = None
        elif imgui.button("Show the result"):
            lat.source, lat.animate = r["name"], False
        self.note_item("show")
        width = imgui.get_content_region_avail().x - buttons_width("Save latent")
        self.latent_file.draw("##latent", state.output_dir, width)
        imgui.same_line()
        if imgui.button("Save latent"):
            self.save(state, "latent")
        with disabled(not r["tuned"]):
            self.tuned_file.draw("##tuned", state.output_dir, width)
            imgui.same_line()
            if imgui.button("Save tuned"):
                self.save(state, "tuned")
        hint(f"Names without a folder are in {shown_folder(state.output_dir)}.")

    # ---- what the buttons do (tests call these too) -----------------------------------------------------
    def open_image(self, state: AppState, path: str) -> None:
        state.actions.append(OpenInvertImage(path, self.frame_fraction))

    def _target_is_current(self, state: AppState, path: str) -> bool:
        return (path, self.frame_fraction) == (state.invert.image, state.invert.frame)

    def estimate(self, state: AppState) -> None:
        """Ask for the camera estimate of the image (opened first if it is not the shown target)."""
        path = self.path_text.strip()
        if not self._target_is_current(state, path):
            self.open_image(state, path)
        state.actions.append(EstimateInvertCamera(path, self.frame_fraction, self.camera_search))

    def preview_view(self, state: AppState) -> None:
        """Render the model at the sliders' camera (the newest asked-for view wins)."""
        state.actions.append(PreviewInvertView(float(self.yaw_deg), float(self.pitch_deg)))

    def update(self, state: AppState) -> None:
        """Come to the front when an image arrives or a run starts (e.g. by a drop on the window)."""
        if state.invert.running and not self._was_running or state.invert.image != self._seen_image:
            self.open = self.focus = True
        self._was_running = state.invert.running

    def start(self, state: AppState) -> None:
        """Ask the session to invert the image with the panel's settings."""
        path = self.path_text.strip()
        if not self._target_is_current(state, path):
            self.open_image(state, path)   # show what is inverted
        steps, tune = max(int(self.steps), 1), max(int(self.tune_steps), 0)
        self.steps, self.tune_steps = steps, tune
        self.symmetry = max(float(self.symmetry), 0.0)
        options = InversionOptions(steps=steps, space=SPACES[self.space], tune_steps=tune,
                                   refine_steps=max(int(self.refine_steps), 0), symmetry_weight=self.symmetry)
        kind = INVERT_CAMERAS[self.camera]
        if kind == "estimate" and state.invert.estimate is not None and self._target_is_current(state, path):
            self._take_estimate(state)
            kind = "angles"   # estimated, checked (and perhaps corrected) by hand: given
        state.actions.append(StartInversion(path, options, kind,
                                            copy.deepcopy(state.camera) if kind == "viewport" else None,
                                            float(self.yaw_deg), float(self.pitch_deg), self.frame_fraction))

    def stop(self, state: AppState) -> None:
        state.actions.append(StopInversion())

    def save(self, state: AppState, what: str) -> None:
        field = self.latent_file if what == "latent" else self.tuned_file
        state.actions.append(SaveInversion(field.target(state.output_dir), what))

    def close(self) -> None:
        self.target_tex.delete()
        self.preview_tex.delete()
        self.view_tex.delete()
