"""AUFaceRefiner: the trained model for inference, a pure ``nn.Module`` (no Lightning).

It is what :func:`au_face.load_refiner` returns and what :class:`~au_face.training.task.AUFaceTask` trains
(as its ``model``): the network, the neutral-shape estimator and the positive weights the
probabilities are calibrated with, for one :class:`~au_face.geometry.FaceGeometry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from au_face.coarse.base import CoarseFrames
from au_face.geometry import FaceGeometry
from au_face.geometry.neutral import NeutralEstimator
from au_face.io.checkpoints import MODEL_PREFIX, CheckpointError, check_finite, describe_load_error, load_checkpoint
from au_face.model.windows import SlidingWindow
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
    """

    pos_weight: torch.Tensor

    def __init__(
        self, geometry: FaceGeometry, net: NetConfig | None = None, clip_length: int = 16, reference: Reference = "mean", calibrated: bool = False
    ) -> None:
        super().__init__()
        if reference not in ("neutral", "mean"):
            raise ValueError(f"reference must be 'neutral' or 'mean', got {reference!r}")
        if reference == "neutral" and geometry.neutral is None:
            raise CheckpointError("reference='neutral' needs a geometry with a neutral estimator (built with the ICT model)")
        self.geometry, self.clip_length, self.reference_mode, self.calibrated = geometry, clip_length, reference, calibrated
        self.net_config = net if net is not None else NetConfig()
        self.net = AUFaceNet.from_geometry(geometry, self.net_config)
        self.neutral = NeutralEstimator.empty(geometry.num_vertices)
        if geometry.neutral is not None:
            self.neutral.install(geometry.neutral)
        self.register_buffer("pos_weight", torch.ones(len(geometry.aus)))

    @property
    def aus(self) -> list[int]:
        return list(self.geometry.aus)

    @property
    def topology_name(self) -> str:
        return self.geometry.topology.name

    @classmethod
    def load(cls, path: str | Path) -> AUFaceRefiner:
        """The refiner of an ``AUFaceTask`` checkpoint (read with ``weights_only=True``), on CPU, in
        eval mode; :class:`CheckpointError` for a missing, foreign or mismatched file."""
        ckpt = load_checkpoint(path)
        hparams = ckpt["hyper_parameters"]
        try:
            net = NetConfig(**hparams.get("net", {}))
            model = cls(FaceGeometry.from_state(ckpt["geometry"]), net, hparams.get("clip_length", 16), hparams.get("reference", "mean"), hparams.get("calibrated", False))
            state = {k.removeprefix(MODEL_PREFIX): v for k, v in ckpt["state_dict"].items() if k.startswith(MODEL_PREFIX)}
            check_finite(path, state)
            model.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{path} is not an au_face AUFaceTask checkpoint: {describe_load_error(err)}") from err
        return model.eval()

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the network on a batch; returns logits, probabilities, Δψ and refined vertices ``[B,T,V,3]``."""
        valid = batch["valid"].bool()
        out = self.net(batch["vertices"], valid, batch.get("reference"), batch.get("crops"), batch.get("features"))
        refined = out.smoothed + self.net.expression.offsets(out.delta_expression)
        refined = torch.where(valid[..., None, None], refined, batch["vertices"])
        return {"logits": out.au_logits, "probs": self.probabilities(out.au_logits), "delta": out.delta_expression, "refined": refined}

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """AU probabilities. Positive weights ``w`` in the BCE move the optimal logit up by ``log w``;
        with ``calibrated`` that shift is taken off, so probabilities follow the training label
        frequencies instead of over-calling rare AUs."""
        if self.calibrated:
            logits = logits - self.pos_weight.log()
        return logits.sigmoid()

    def reference(self, coarse: CoarseFrames) -> torch.Tensor:
        """S̄ ``[V,3]`` of a whole video, as this model was trained to use it."""
        if self.reference_mode == "neutral":
            return self.neutral(coarse.vertices, coarse.valid).cpu()
        return coarse.mean_shape()

    @torch.no_grad()
    def refine(self, coarse: CoarseFrames, reference: torch.Tensor | None = None, batch_size: int = 16) -> Refinement:
        """Refine a whole video: the windows of :class:`~au_face.model.windows.SlidingWindow` (``clip_length``
        frames, half-window stride), run in batches and blended with its tent weights.

        ``reference`` is S̄ (defaults to :meth:`reference`). Frames without a face keep their coarse mesh.
        """
        if coarse.topology != self.topology_name:
            raise CheckpointError(f"checkpoint was trained on topology {self.topology_name!r}, the frames are {coarse.topology!r}")
        self.eval()
        reference = self.reference(coarse) if reference is None else reference
        length = min(self.clip_length, len(coarse))  # a window longer than the video would be all padding
        window = SlidingWindow(length)
        windows, blend = window.plan(len(coarse)), window.blend()
        parts: list[list[np.ndarray]] = []
        for first in range(0, len(windows), batch_size):
            group = windows[first : first + batch_size]
            out = self(self._window_batch(coarse, [start for start, _ in group], reference, length))
            for i, (start, stop) in enumerate(group):
                n = stop - start
                parts.append(blend.add(start, out["refined"][i, :n].cpu().numpy(), out["probs"][i, :n].cpu().numpy()))
        parts.append(blend.finish())
        vertices, au_probs = (torch.from_numpy(np.concatenate(arrays)) for arrays in zip(*(p for p in parts if p)))
        vertices[~coarse.valid] = coarse.vertices[~coarse.valid].float()
        return Refinement(vertices, au_probs, self.aus)

    def _window_batch(self, coarse: CoarseFrames, starts: list[int], reference: torch.Tensor, length: int) -> dict[str, torch.Tensor]:
        """Windows of ``length`` frames (the last padded with invalid frames) as a batch."""
        device = self.pos_weight.device

        def window(x: torch.Tensor, start: int) -> torch.Tensor:
            part = x[start : start + length]
            pad = length - len(part)
            return torch.cat([part, part.new_zeros(pad, *part.shape[1:])]) if pad else part

        def stack(x: torch.Tensor) -> torch.Tensor:
            return torch.stack([window(x, s) for s in starts]).to(device)

        batch = {
            "vertices": stack(coarse.vertices.float()),
            "valid": stack(coarse.valid.bool()),
            "reference": reference.float().to(device).expand(len(starts), -1, -1),
        }
        if self.net.uses_video and coarse.crops is not None:
            batch["crops"] = stack(coarse.crops).permute(0, 1, 4, 2, 3).float() / 255.0
        if self.net.uses_video and coarse.features is not None:
            batch["features"] = stack(coarse.features.float())
        return batch


def load_refiner(checkpoint: str | Path) -> AUFaceRefiner:
    """The inference model of a trained ``AUFaceTask`` checkpoint (CPU, eval mode), without Lightning.

    Raises :class:`~au_face.io.checkpoints.CheckpointError` for a missing file or one that is not such a checkpoint.
    """
    return AUFaceRefiner.load(checkpoint)


__all__ = ["AUFaceRefiner", "Reference", "Refinement", "load_refiner"]
