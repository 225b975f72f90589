"""DECA coarse reconstruction (Feng et al. 2021): ResNet-50 -> FLAME codes -> mesh per frame.

Only DECA's coarse branch is used, as in the paper: the encoder ``E_flame`` regresses 236
numbers per 224x224 face crop, split as shape 100, tex 50, exp 50, pose 6 (global rotation
and jaw, axis-angle), cam 3 (orthographic scale, tx, ty) and light 27. Module names match
DECA's ``deca_model.tar`` so its ``E_flame`` state dict loads by key name.

Image-space convention of the output: ``posed = scale * vertices @ rotation.T + translation``
gives x, y in image pixels (y down) and z pointing away from the camera; ``rotation`` is
DECA's global rotation followed by the flip from FLAME's y-up frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from au_face.coarse.base import CoarseFrames, CoarseReconstructor
from au_face.errors import AUFaceError
from au_face.faces.flame import FlameModel, rodrigues
from au_face.faces.mediapipe import landmark_points
from au_face.faces.topology import FaceTopology
from au_face.nn.resnet import resnet50
from au_face.utils.assets import DECA_CHECKPOINT, FLAME_LANDMARKS

#: DECA's code layout (``cfg.model.param_list`` and ``n_*`` in decalib/utils/config.py).
DECA_PARAMS: tuple[tuple[str, int], ...] = (
    ("shape", 100),
    ("tex", 50),
    ("exp", 50),
    ("pose", 6),
    ("cam", 3),
    ("light", 27),
)
DECA_NUM_PARAMS = sum(n for _, n in DECA_PARAMS)
DECA_CROP_SIZE = 224
#: DECA's test-time crop: landmark box side times 1.1 ("kpt68" box), then times 1.25.
DECA_BOX_SCALE = 1.1 * 1.25

#: A face box ``(left, top, right, bottom)`` in pixels around the 68 iBUG landmarks.
FaceBox = tuple[float, float, float, float]
#: Finds the face box in an RGB frame, or None when there is no face.
FaceBoxFn = Callable[[np.ndarray], FaceBox | None]


class DecaCheckpointError(AUFaceError, ValueError):
    """A DECA checkpoint that cannot be read or does not match the encoder."""


class DecaInputError(AUFaceError, ValueError):
    """Frames or models unsuitable for the DECA reconstructor."""


class DecaEncoder(nn.Module):
    """DECA's coarse encoder ``E_flame``: ResNet-50 features -> 1024 -> ReLU -> 236 codes."""

    def __init__(self, num_params: int = DECA_NUM_PARAMS) -> None:
        super().__init__()
        self.encoder = resnet50()
        self.layers = nn.Sequential(nn.Linear(self.encoder.out_features, 1024), nn.ReLU(), nn.Linear(1024, num_params))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB crops ``[B,3,224,224]`` in [0,1] -> (codes ``[B,236]``, features ``[B,2048]``)."""
        features = self.encoder(images)
        return self.layers(features), features

    @classmethod
    def load(cls, path: str | Path | None = None) -> DecaEncoder:
        """Read the ``E_flame`` weights of DECA's ``deca_model.tar`` (path or ``$AU_FACE_DECA``)."""
        path = DECA_CHECKPOINT.resolve(path)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for foreign files
            raise DecaCheckpointError(f"{path} is not a readable torch checkpoint: {err}") from err
        if not isinstance(checkpoint, dict) or "E_flame" not in checkpoint:
            found = sorted(map(str, checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise DecaCheckpointError(f"{path} is not a DECA checkpoint: no 'E_flame' entry (found {found})")
        encoder = cls()
        encoder.load_deca_state(checkpoint["E_flame"], str(path))
        return encoder.eval()

    def load_deca_state(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Load an ``E_flame`` state dict strictly by key name and shape (BatchNorm counters optional)."""
        own = self.state_dict()
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in own]
        mismatched = [
            f"{k} {list(state[k].shape)} != {list(own[k].shape)}"
            for k in own
            if k in state and state[k].shape != own[k].shape
        ]
        if missing or unexpected or mismatched:
            parts = [
                f"{label} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched))
                if keys
            ]
            raise DecaCheckpointError(f"{source}: E_flame does not match DECA's coarse encoder; " + "; ".join(parts))
        self.load_state_dict(state, strict=False)


def split_deca_codes(codes: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split ``[B,236]`` codes into DECA's named parts (``light`` as ``[B,9,3]``)."""
    if codes.ndim != 2 or codes.shape[1] != DECA_NUM_PARAMS:
        raise DecaInputError(f"DECA codes must be [B,{DECA_NUM_PARAMS}], got {list(codes.shape)}")
    parts = dict(zip((name for name, _ in DECA_PARAMS), codes.split([n for _, n in DECA_PARAMS], dim=1)))
    parts["light"] = parts["light"].reshape(-1, 9, 3)
    return parts


class MediaPipeFaceBox:
    """Face box from the MediaPipe face mesh: brows to chin, across the face oval.

    Approximates the extent of the 68 iBUG landmarks (which DECA's crop rule expects);
    tracks between frames of a video until :meth:`reset`.
    """

    def __init__(self, min_confidence: float = 0.5) -> None:
        try:
            import mediapipe as mp
        except ImportError as err:
            raise DecaInputError(
                "the default DECA face box needs mediapipe: pip install 'au_face[mediapipe]', or pass crop_fn"
            ) from err
        self._mp = mp
        self.min_confidence = min_confidence
        connections = mp.solutions.face_mesh_connections
        self._oval = sorted({i for edge in connections.FACEMESH_FACE_OVAL for i in edge})
        self._brows = sorted(
            {i for edge in connections.FACEMESH_LEFT_EYEBROW | connections.FACEMESH_RIGHT_EYEBROW for i in edge}
        )
        self._mesh: Any | None = None  # mediapipe's FaceMesh graph (untyped), made on first use

    def reset(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
        self._mesh = None

    def __call__(self, frame: np.ndarray) -> FaceBox | None:
        if self._mesh is None:
            self._mesh = self._mp.solutions.face_mesh.FaceMesh(
                static_image_mode=False, max_num_faces=1, min_detection_confidence=self.min_confidence
            )
        result = self._mesh.process(np.ascontiguousarray(frame))
        if not result.multi_face_landmarks:
            return None
        h, w = frame.shape[:2]
        points = landmark_points(result.multi_face_landmarks[0])[:, :2] * np.array([w, h])
        oval, brows = points[self._oval], points[self._brows]
        return float(oval[:, 0].min()), float(brows[:, 1].min()), float(oval[:, 0].max()), float(oval[:, 1].max())


def crop_window(box: FaceBox) -> tuple[float, float, float]:
    """DECA's square crop ``(centre x, centre y, side)`` in pixels for a landmark box."""
    left, top, right, bottom = box
    side = (right - left + bottom - top) / 2 * DECA_BOX_SCALE
    return (left + right) / 2, (top + bottom) / 2, side


def crop_face(frame: np.ndarray, window: tuple[float, float, float], size: int = DECA_CROP_SIZE) -> np.ndarray:
    """Resample the square ``window`` of an RGB frame to ``size x size`` (outside is black)."""
    cx, cy, side = window
    k = size / side
    affine = np.array([[k, 0, size / 2 - k * cx], [0, k, size / 2 - k * cy]], dtype=np.float64)
    return cv2.warpAffine(frame, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


class DecaReconstructor(CoarseReconstructor):
    """Per-frame DECA coarse reconstruction on the FLAME topology.

    ``vertices`` are FLAME meshes without the global rotation (jaw pose kept); ``expression``
    holds the 50 FLAME expression codes and ``features`` the 2048-d ResNet-50 features.
    """

    name = "deca"
    version = "1"

    def __init__(
        self,
        flame: FlameModel,
        encoder: DecaEncoder,
        crop_fn: FaceBoxFn | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
        keep_crops: bool = False,
    ) -> None:
        if flame.n_shape != 100 or flame.n_expression != 50:
            raise DecaInputError(
                f"DECA needs FLAME with 100 shape and 50 expression codes, got {flame.n_shape} and {flame.n_expression}"
            )
        self._topology = flame.topology()
        self.device = torch.device(device)
        self.flame = flame.to(self.device).eval()
        self.encoder = encoder.to(self.device).eval()
        self.crop_fn = crop_fn if crop_fn is not None else MediaPipeFaceBox()
        self.batch_size = batch_size
        self.keep_crops = keep_crops

    @classmethod
    def from_files(
        cls,
        checkpoint: str | Path | None = None,
        flame_model: str | Path | None = None,
        flame_landmarks: str | Path | None = None,
        **kwargs,
    ) -> DecaReconstructor:
        """Build from ``deca_model.tar``, ``generic_model.pkl`` and ``landmark_embedding.npy``.

        Paths default to ``$AU_FACE_DECA``, ``$AU_FACE_FLAME`` and ``$AU_FACE_FLAME_LANDMARKS``.
        """
        flame = FlameModel.load(flame_model, FLAME_LANDMARKS.resolve(flame_landmarks))
        return cls(flame, DecaEncoder.load(checkpoint), **kwargs)

    @classmethod
    def create(cls, device: str = "cpu") -> DecaReconstructor:
        """From the files named by ``$AU_FACE_DECA``, ``$AU_FACE_FLAME`` and ``$AU_FACE_FLAME_LANDMARKS``."""
        return cls.from_files(device=device)

    @property
    def topology(self) -> FaceTopology:
        return self._topology

    def reset(self) -> None:
        reset = getattr(self.crop_fn, "reset", None)
        if callable(reset):
            reset()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Canonical meshes and image-space pose for codes ``[B,236]`` of crops ``windows [B,3]``."""
        parts = split_deca_codes(codes)
        pose = parts["pose"]
        jaw_only = torch.cat([torch.zeros_like(pose[:, :3]), pose[:, 3:]], dim=1)
        vertices = self.flame(parts["shape"], parts["exp"], jaw_only)
        pivot = self.flame.rest_joints(parts["shape"], parts["exp"])[:, 0]
        head_rotation = rodrigues(pose[:, :3])
        cam_scale, cam_shift = parts["cam"][:, 0], parts["cam"][:, 1:]
        # DECA: crop_normalised = s * (R (v - J0) + J0 + [tx, ty, 0]) with y up; crop pixel = (1 + n) * side / 2
        flip = torch.diag(vertices.new_tensor([1.0, -1.0, -1.0]))
        half_side = windows[:, 2] / 2
        scale = half_side * cam_scale
        offset = pivot - (head_rotation @ pivot[..., None])[..., 0]
        offset[:, :2] += cam_shift
        translation = scale[:, None] * (offset @ flip)
        translation[:, :2] += windows[:, :2]
        return {
            "vertices": vertices,
            "rotation": flip @ head_rotation,
            "translation": translation,
            "scale": scale,
            "landmarks3d": self.flame.landmarks3d(vertices),
            "expression": parts["exp"],
        }

    def _check_frames(self, frames: Sequence[np.ndarray], timestamps: Sequence[float]) -> None:
        if len(frames) != len(timestamps):
            raise DecaInputError(f"{len(frames)} frames but {len(timestamps)} timestamps")
        for i, frame in enumerate(frames):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise DecaInputError(f"frame {i} must be RGB uint8 [H,W,3], got {frame.dtype} {list(frame.shape)}")

    @torch.no_grad()
    def reconstruct(self, frames: Sequence[np.ndarray], timestamps: Sequence[float], fps: float) -> CoarseFrames:
        """Crop each frame around its face, encode, decode through FLAME; faceless frames are invalid."""
        self._check_frames(frames, timestamps)
        n, n_verts = len(frames), self._topology.num_vertices
        out = {
            "vertices": torch.zeros(n, n_verts, 3),
            "rotation": torch.zeros(n, 3, 3),
            "translation": torch.zeros(n, 3),
            "scale": torch.zeros(n),
            "landmarks2d": torch.zeros(n, 68, 2),
            "expression": torch.zeros(n, 50),
            "features": torch.zeros(n, self.encoder.encoder.out_features),
        }
        crops = torch.zeros(n, DECA_CROP_SIZE, DECA_CROP_SIZE, 3, dtype=torch.uint8) if self.keep_crops else None
        valid = torch.zeros(n, dtype=torch.bool)
        found: list[tuple[int, tuple[float, float, float]]] = []
        for i, frame in enumerate(frames):
            box = self.crop_fn(frame)
            if box is not None:
                found.append((i, crop_window(box)))
        for start in range(0, len(found), self.batch_size):
            chunk = found[start : start + self.batch_size]
            index = torch.tensor([i for i, _ in chunk])
            windows = torch.tensor([w for _, w in chunk], dtype=torch.float32, device=self.device)
            images = np.stack([crop_face(frames[i], w) for i, w in chunk])
            batch = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float() / 255
            codes, features = self.encoder(batch)
            decoded = self.decode(codes, windows)
            landmarks = decoded["scale"][:, None, None] * decoded["landmarks3d"] @ decoded["rotation"].transpose(1, 2)
            landmarks = landmarks + decoded["translation"][:, None]
            out["landmarks2d"][index] = landmarks[..., :2].cpu()
            out["features"][index] = features.cpu()
            for key in ("vertices", "rotation", "translation", "scale", "expression"):
                out[key][index] = decoded[key].float().cpu()
            if crops is not None:
                crops[index] = torch.from_numpy(images)
            valid[index] = True
        return CoarseFrames(
            valid=valid,
            timestamps=torch.as_tensor(np.asarray(timestamps, dtype=np.float64)),
            fps=float(fps),
            topology=self._topology.name,
            crops=crops,
            **out,
        )
