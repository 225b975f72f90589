"""AUFaceRefiner: the trained model for inference, a pure ``nn.Module`` (no Lightning).

It is what :func:`au_face.load_refiner` returns and what :class:`~au_face.training.task.AUFaceTask` trains
(as its ``model``): the network, the neutral-shape estimator and the positive weights the
probabilities are calibrated with, for one :class:`~au_face.geometry.FaceGeometry`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from au_face.coarse.base import CoarseFrames
from au_face.errors import APPEARANCE_MISSING, AppearanceMissingWarning
from au_face.geometry import FaceGeometry
from au_face.geometry.neutral import NeutralEstimator
from au_face.io.checkpoints import MODEL_PREFIX, CheckpointError, check_finite, describe_load_error, load_checkpoint
from au_face.model.exclusions import lip_press_rule, rule_out
from au_face.model.reference import ReferenceSchedule, bounded_update, fit_frames
from au_face.model.windows import SlidingWindow
from au_face.nn.appearance import AppearanceHead
from au_face.nn.net import AUFaceNet, NetConfig


@dataclass
class Refinement:
    """Refined canonical vertices ``[T,V,3]`` and AU probabilities ``[T,K]`` for the AUs ``aus``."""

    vertices: torch.Tensor
    au_probs: torch.Tensor
    aus: list[int]


#: How S̄ is taken: the person's estimated neutral shape, or the mean over the video's valid frames.
Reference = Literal["neutral", "mean"]


class AUFaceRefiner(nn.Module):
    """AU probabilities and refined meshes for clips (``forward``) and whole videos (``refine``).

    Args:
        geometry: topology, AU list, masks, basis and neutral estimator.
        net: architecture. clip_length: frames per window at inference.
        reference: S̄ is the person's estimated ``neutral`` shape or the clip ``mean``.
        calibrated: take the ``log w`` shift of the positive BCE weights off the probabilities.
        mesh_exclusions: set to 0 the probabilities of AUs the coarse mesh rules out (AU24 on parted
            lips; :mod:`~au_face.model.exclusions`). Training reads the logits, so it is unchanged.
    """

    pos_weight: torch.Tensor

    def __init__(
        self,
        geometry: FaceGeometry,
        net: NetConfig | None = None,
        clip_length: int = 16,
        reference: Reference = "mean",
        calibrated: bool = False,
        mesh_exclusions: bool = True,
    ) -> None:
        super().__init__()
        if reference not in ("neutral", "mean"):
            raise ValueError(f"reference must be 'neutral' or 'mean', got {reference!r}")
        if reference == "neutral" and geometry.neutral is None:
            raise CheckpointError(
                "reference='neutral' needs a geometry with a neutral estimator (built with the ICT model)"
            )
        self.geometry, self.clip_length, self.reference_mode, self.calibrated = (
            geometry,
            clip_length,
            reference,
            calibrated,
        )
        self.net_config = net if net is not None else NetConfig()
        self.net = AUFaceNet.from_geometry(geometry, self.net_config)
        self.neutral = NeutralEstimator.empty(geometry.num_vertices)
        if geometry.neutral is not None:
            self.neutral.install(geometry.neutral)
        self.register_buffer("pos_weight", torch.ones(len(geometry.aus)))
        self.appearance: AppearanceHead | None = None
        self.mesh_exclusions = mesh_exclusions
        self._lip_press_rule = lip_press_rule(geometry.aus, geometry.topology.landmarks68)

    def add_appearance_head(self, dim: int, parts: int = 0) -> AppearanceHead:
        """Give the model an appearance head over ``dim``-long appearance descriptors (all weights zero;
        ``parts`` parts with limits, none reached)."""
        self.appearance = AppearanceHead(len(self.geometry.aus), dim, parts).to(self.pos_weight.device)
        return self.appearance

    def add_heads_of(self, state: dict[str, torch.Tensor], prefix: str = "") -> None:
        """Add the optional heads whose weights ``state`` (keys after ``prefix``) holds and this model lacks."""
        key, limits = f"{prefix}appearance.mean", f"{prefix}appearance.part_limits"
        if key in state and self.appearance is None:
            self.add_appearance_head(int(state[key].shape[0]), int(state[limits].shape[0]) if limits in state else 0)

    @property
    def lip_press_exclusion(self) -> tuple[int, list[int]] | None:
        """AU24's column and the inner-lip vertices it is ruled out on
        (:func:`~au_face.model.exclusions.rule_out`), or None: no ``mesh_exclusions``, no AU24, or a
        topology without inner-lip landmarks."""
        return self._lip_press_rule if self.mesh_exclusions else None

    @property
    def aus(self) -> list[int]:
        return list(self.geometry.aus)

    @property
    def topology_name(self) -> str:
        return self.geometry.topology.name

    @property
    def frame_inputs(self) -> tuple[str, ...]:
        """The optional per-frame fields the model reads: ``crops`` or ``features`` for a video branch,
        ``appearance`` for an appearance head."""
        inputs: tuple[str, ...] = ()
        if self.net.uses_video:
            inputs = ("features",) if self.net.video_from_features else ("crops",)
        return (*inputs, "appearance") if self.appearance is not None else inputs

    @classmethod
    def load(cls, path: str | Path) -> AUFaceRefiner:
        """The refiner of an ``AUFaceTask`` checkpoint (read with ``weights_only=True``), on CPU, in
        eval mode; :class:`CheckpointError` for a missing, foreign or mismatched file."""
        ckpt = load_checkpoint(path)
        hparams = ckpt["hyper_parameters"]
        try:
            net = NetConfig(**hparams.get("net", {}))
            model = cls(
                FaceGeometry.from_state(ckpt["geometry"]),
                net,
                hparams.get("clip_length", 16),
                hparams.get("reference", "mean"),
                hparams.get("calibrated", False),
                hparams.get("mesh_exclusions", True),
            )
            state = {
                k.removeprefix(MODEL_PREFIX): v for k, v in ckpt["state_dict"].items() if k.startswith(MODEL_PREFIX)
            }
            check_finite(path, state)
            model.add_heads_of(state)
            model.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(
                f"{path} is not an au_face AUFaceTask checkpoint: {describe_load_error(err)}"
            ) from err
        return model.eval()

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the network on a batch; returns logits, probabilities (AUs the mesh rules out at 0 with
        ``mesh_exclusions``), Δψ and refined vertices ``[B,T,V,3]``."""
        valid = batch["valid"].bool()
        out = self.net(batch["vertices"], valid, batch.get("reference"), batch.get("crops"), batch.get("features"))
        refined = out.smoothed + self.net.expression.offsets(out.delta_expression)
        refined = torch.where(valid[..., None, None], refined, batch["vertices"])
        logits = out.au_logits
        if self.appearance is not None and "appearance" in batch:
            logits = logits + self.appearance(batch["appearance"], valid)
        elif self.appearance is not None:
            warnings.warn(APPEARANCE_MISSING, AppearanceMissingWarning, stacklevel=2)
        return {
            "logits": logits,
            "probs": rule_out(self.probabilities(logits), batch["vertices"], self.lip_press_exclusion),
            "delta": out.delta_expression,
            "refined": refined,
        }

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """AU probabilities. Positive weights ``w`` in the BCE move the optimal logit up by ``log w``;
        with ``calibrated`` that shift is taken off, so probabilities follow the training label
        frequencies instead of over-calling rare AUs."""
        if self.calibrated:
            logits = logits - self.pos_weight.log()
        return logits.sigmoid()

    def reference(self, coarse: CoarseFrames) -> torch.Tensor:
        """S̄ ``[V,3]`` of a whole video, as the model reads a video: with ``reference='neutral'`` the median
        of each frame's own neutral fit (:meth:`NeutralEstimator.median_reference
        <au_face.geometry.neutral.NeutralEstimator.median_reference>`), else the mean shape."""
        if self.reference_mode == "neutral":
            return self.neutral.median_reference(coarse.vertices, coarse.valid).cpu()
        return coarse.mean_shape()

    def scheduled_references(self, coarse: CoarseFrames) -> dict[int, torch.Tensor]:
        """S̄ of every fit of :mod:`~au_face.model.reference`'s schedule for a whole video, by the
        frame count it was fitted on (each fit bounded by the one before)."""
        schedule = ReferenceSchedule()
        schedule.add(coarse.valid.numpy())
        fits: dict[int, torch.Tensor] = {}
        previous = None
        for count in schedule.points or [len(coarse)]:
            picks = torch.from_numpy(fit_frames(count))
            sample = CoarseFrames.from_canonical(
                coarse.vertices[picks].float(), coarse.valid[picks], coarse.fps, coarse.topology
            )
            previous = bounded_update(previous, self.reference(sample).detach().float().cpu().numpy())
            fits[count] = torch.from_numpy(previous)
        return fits

    @torch.no_grad()
    def refine(self, coarse: CoarseFrames, reference: torch.Tensor | None = None, batch_size: int = 16) -> Refinement:
        """Refine a whole video: the windows of :class:`~au_face.model.windows.SlidingWindow` (``clip_length``
        frames, half-window stride), run in batches and blended with its tent weights.

        ``reference`` is S̄ for every window; by default each window gets the S̄ that
        ``au-face reconstruct`` gives it (:meth:`scheduled_references`). Frames without a face keep
        their coarse mesh.
        """
        self._check_topology(coarse)
        self.eval()
        length = min(self.clip_length, len(coarse))  # a window longer than the video would be all padding
        window = SlidingWindow(length)
        windows, blend = window.plan(len(coarse)), window.blend()
        if reference is None:
            fits = self.scheduled_references(coarse)  # the latest fit at or before a window's end, else the first
            references = [fits[max((u for u in fits if u <= stop), default=min(fits))] for _, stop in windows]
        else:
            references = [reference] * len(windows)
        parts: list[list[np.ndarray]] = []
        for first in range(0, len(windows), batch_size):
            group = windows[first : first + batch_size]
            out = self(
                self._batch(
                    [coarse.slice(start, stop) for start, stop in group], references[first : first + batch_size], length
                )
            )
            for i, (start, stop) in enumerate(group):
                n = stop - start
                parts.append(blend.add(start, out["refined"][i, :n].cpu().numpy(), out["probs"][i, :n].cpu().numpy()))
        parts.append(blend.finish())
        vertices, au_probs = (torch.from_numpy(np.concatenate(arrays)) for arrays in zip(*(p for p in parts if p)))
        vertices[~coarse.valid] = coarse.vertices[~coarse.valid].float()
        return Refinement(vertices, au_probs, self.aus)

    @torch.no_grad()
    def refine_clips(self, clips: list[CoarseFrames], reference: torch.Tensor) -> list[Refinement]:
        """Refine clips of at most ``clip_length`` frames, one window each, in one batch: what
        :meth:`refine` gives each of them alone with this ``reference``, at the cost of one call."""
        self.eval()
        out = self(self._batch(clips, [reference] * len(clips), max(len(clip) for clip in clips)))
        return [
            Refinement(out["refined"][i, : len(clip)].cpu(), out["probs"][i, : len(clip)].cpu(), self.aus)
            for i, clip in enumerate(clips)
        ]

    @torch.no_grad()
    def refine_photos(self, photos: CoarseFrames) -> tuple[torch.Tensor, Refinement]:
        """Each frame of ``photos`` on its own, as unrelated photos, in one batch: its S̄ ``[N,V,3]`` (what
        :meth:`reference` gives the frame alone) and its refinement as a one-frame clip with that S̄ (what
        :meth:`refine` gives it alone). Frames without a face keep their coarse mesh, also as S̄."""
        self._check_topology(photos)
        self.eval()
        references = photos.vertices.float().clone()
        if self.reference_mode == "neutral" and photos.num_valid:
            references[photos.valid] = self.neutral.fit_each(photos.vertices[photos.valid]).cpu()
        clips = [photos.slice(i, i + 1) for i in range(len(photos))]
        out = self(self._batch(clips, list(references), 1))
        return references, Refinement(out["refined"][:, 0].cpu(), out["probs"][:, 0].cpu(), self.aus)

    def _check_topology(self, frames: CoarseFrames) -> None:
        """:class:`CheckpointError` unless ``frames`` are on the topology this model was trained on."""
        if frames.topology != self.topology_name:
            raise CheckpointError(
                f"checkpoint was trained on topology {self.topology_name!r}, the frames are {frames.topology!r}"
            )

    def _batch(self, clips: list[CoarseFrames], references: list[torch.Tensor], length: int) -> dict[str, torch.Tensor]:
        """Clips of at most ``length`` frames (padded with invalid frames) and their S̄ as a batch."""
        device = self.pos_weight.device

        def padded(x: torch.Tensor) -> torch.Tensor:
            pad = length - len(x)
            return torch.cat([x, x.new_zeros(pad, *x.shape[1:])]) if pad else x

        def stack(name: str) -> torch.Tensor:
            return torch.stack([padded(getattr(clip, name)) for clip in clips]).to(device)

        batch = {
            "vertices": stack("vertices").float(),
            "valid": stack("valid").bool(),
            "reference": torch.stack([torch.as_tensor(r).float() for r in references]).to(device),
        }
        if self.net.uses_video and clips[0].crops is not None:
            batch["crops"] = stack("crops").permute(0, 1, 4, 2, 3).float() / 255.0
        if self.net.uses_video and clips[0].features is not None:
            batch["features"] = stack("features").float()
        if self.appearance is not None and all(clip.appearance is not None for clip in clips):
            batch["appearance"] = stack("appearance").float()
        return batch


def load_refiner(checkpoint: str | Path) -> AUFaceRefiner:
    """The inference model of a trained ``AUFaceTask`` checkpoint (CPU, eval mode), without Lightning.

    Raises :class:`~au_face.io.checkpoints.CheckpointError` for a missing file or one that is not such a checkpoint.
    """
    return AUFaceRefiner.load(checkpoint)


__all__ = ["AUFaceRefiner", "Reference", "Refinement", "load_refiner"]
