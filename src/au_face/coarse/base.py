"""The coarse-reconstruction contract: frames in, :class:`CoarseFrames` out."""

from __future__ import annotations

import abc
import zipfile
import zlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from au_face.errors import AUFaceError
from au_face.faces.topology import FaceTopology
from au_face.utils.files import atomic_save_npz
from au_face.utils.lazy import lazy_module

if TYPE_CHECKING:
    import torch

    from au_face.coarse.tracks import FaceTrack
else:
    torch = lazy_module("torch")  # the coarse pass of au-face reconstruct runs without it

#: Optional per-frame fields of :class:`CoarseFrames` (first dimension is time).
OPTIONAL_FIELDS = ("expression", "features", "crops", "confidence", "appearance")
#: The extra per-frame field of :meth:`CoarseReconstructor.reconstruct_arrays` from reconstructors that
#: find shot changes in video (not a :class:`CoarseFrames` field): each frame's shot, numbered from 0
#: at :meth:`~CoarseReconstructor.reset`. The inference pipeline gives each shot refinement windows of its own.
SHOT_FIELD = "shot"


class CoarseFramesError(AUFaceError, ValueError):
    """Raised for a malformed coarse-frames record."""


#: Faces kept at most in one photo by :meth:`CoarseReconstructor.reconstruct_faces` (every face, not a choice).
EVERY_FACE = 16


def read_npz_array(path: str | Path, name: str) -> np.ndarray:
    """One array of a coarse-frames npz (without reading the others); :class:`CoarseFramesError`
    naming the file if it is unreadable, lacks the array, or holds it as Python objects."""
    try:
        with np.load(path) as z:
            return z[name]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise CoarseFramesError(
            f"{path} is not a readable coarse-frames npz ({type(err).__name__}: {err}); "
            "delete it and run au-face preprocess again"
        ) from err


@dataclass
class CoarseFrames:
    """Per-frame coarse reconstruction of one video or clip.

    Shapes use ``T`` frames and ``V`` vertices. The image-space mesh is
    ``scale[t] * vertices[t] @ rotation[t].T + translation[t]``.

    Attributes:
        vertices: ``[T,V,3]`` float32 in the canonical head frame (rigid pose removed).
        valid: ``[T]`` bool, False where no face was found (other fields are zeros there).
        rotation: ``[T,3,3]``; translation: ``[T,3]``; scale: ``[T]``.
        landmarks2d: ``[T,68,2]`` iBUG-68 landmarks in image pixels.
        timestamps: ``[T]`` seconds from the start of the video.
        fps: frames per second of the source.
        topology: name of the mesh topology.
        expression: ``[T,E]`` expression codes of a parametric reconstructor, else None.
        features: ``[T,F]`` per-frame features for the temporal branch, else None.
        crops: ``[T,H,W,3]`` uint8 aligned RGB face crops, else None.
        confidence: ``[T]`` float32 in [0, 1], how well the frame's mesh fits (0 without a
            face), for reconstructors that measure it, else None.
        appearance: ``[T,D]`` float32 appearance descriptors (:mod:`au_face.faces.appearance`; zeros
            without a face), for a reconstructor asked for them, else None.
    """

    vertices: torch.Tensor
    valid: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    scale: torch.Tensor
    landmarks2d: torch.Tensor
    timestamps: torch.Tensor
    fps: float
    topology: str
    expression: torch.Tensor | None = None
    features: torch.Tensor | None = None
    crops: torch.Tensor | None = None
    confidence: torch.Tensor | None = None
    appearance: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.vertices.shape[0]
        if self.vertices.ndim != 3 or self.vertices.shape[-1] != 3:
            raise CoarseFramesError(f"vertices must be [T,V,3], got {tuple(self.vertices.shape)}")
        expected = {
            "valid": (n,),
            "rotation": (n, 3, 3),
            "translation": (n, 3),
            "scale": (n,),
            "landmarks2d": (n, 68, 2),
            "timestamps": (n,),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise CoarseFramesError(f"{name} must be {list(shape)}, got {list(got)}")
        for name in OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None and value.shape[0] != n:
                raise CoarseFramesError(f"{name} has {value.shape[0]} frames, vertices {n}")
        if not torch.isfinite(self.vertices[self.valid]).all():
            raise CoarseFramesError("vertices of valid frames contain NaN or inf")

    @classmethod
    def from_canonical(
        cls, vertices: torch.Tensor, valid: torch.Tensor, fps: float, topology: str, **optional: torch.Tensor
    ) -> CoarseFrames:
        """A record of canonical meshes with no image pose: identity rotation, zero translation,
        unit scale, zero landmarks, timestamps ``t / fps``; ``optional`` sets the optional fields."""
        n = vertices.shape[0]
        return cls(
            vertices=vertices,
            valid=valid,
            rotation=torch.eye(3).repeat(n, 1, 1),
            translation=torch.zeros(n, 3),
            scale=torch.ones(n),
            landmarks2d=torch.zeros(n, 68, 2),
            timestamps=torch.arange(n, dtype=torch.float64) / fps,
            fps=fps,
            topology=topology,
            **optional,
        )

    def __len__(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_valid(self) -> int:
        return int(self.valid.sum())

    def mean_shape(self) -> torch.Tensor:
        """``S̄``: mean canonical shape ``[V,3]`` over valid frames (zeros if none is valid)."""
        if self.num_valid == 0:
            return torch.zeros_like(self.vertices[0])
        return self.vertices[self.valid].mean(dim=0)

    def posed_vertices(self) -> torch.Tensor:
        """``[T,V,3]`` vertices back in image space."""
        return self.scale[:, None, None] * self.vertices @ self.rotation.transpose(1, 2) + self.translation[:, None]

    def slice(self, start: int, stop: int) -> CoarseFrames:
        """Frames ``start:stop`` as a new record."""
        kwargs: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            kwargs[f.name] = value[start:stop] if isinstance(value, torch.Tensor) else value
        return CoarseFrames(**kwargs)

    @classmethod
    def concat(cls, parts: Sequence[CoarseFrames]) -> CoarseFrames:
        """Join records of the same video in time order."""
        if not parts:
            raise CoarseFramesError("nothing to concatenate")
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            values = [getattr(p, f.name) for p in parts]
            if isinstance(values[0], torch.Tensor):
                kwargs[f.name] = torch.cat(values)
            elif values[0] is None and f.name in OPTIONAL_FIELDS:
                kwargs[f.name] = None
            else:
                kwargs[f.name] = values[0]
        return cls(**kwargs)

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Arrays for saving; optional fields that are None are left out."""
        out: dict[str, np.ndarray] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        return out

    def save(self, path: str | Path) -> None:
        """Write an npz atomically (temporary file + rename)."""
        atomic_save_npz(path, compressed=False, **self.to_numpy())

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False) -> CoarseFrames:
        """Read a record written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"coarse-frames file not found: {path}")
        try:
            with np.load(path) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise CoarseFramesError(f"{path} is not a readable coarse-frames npz: {err}") from err
        required = {f.name for f in fields(cls)} - set(OPTIONAL_FIELDS)
        missing = sorted(required - set(arrays))
        if missing:
            raise CoarseFramesError(f"{path} is not a coarse-frames file: missing {missing}")
        return cls.from_numpy(arrays)

    @classmethod
    def from_numpy(cls, arrays: dict[str, np.ndarray]) -> CoarseFrames:
        """The record of :meth:`to_numpy`'s arrays (sharing their memory)."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in arrays:
                continue
            value = arrays[f.name]
            if f.name == "fps":
                kwargs[f.name] = float(value)
            elif f.name == "topology":
                kwargs[f.name] = str(value)
            else:
                kwargs[f.name] = torch.from_numpy(np.ascontiguousarray(value))
        return cls(**kwargs)

    def with_fields(self, **changes: Any) -> CoarseFrames:
        """A copy with some fields replaced."""
        return replace(self, **changes)


class CoarseReconstructor(abc.ABC):
    """Per-frame 3D face reconstructor.

    Implementations hold tracking state between frames of one video; call :meth:`reset`
    before a new video. Frames are RGB uint8 arrays ``[H,W,3]``.
    """

    #: short identifier stored in caches, e.g. ``"mediapipe"``.
    name: str = "base"
    #: bump when outputs change, so caches made by an older version are redone.
    version: str = "0"
    #: runs on one core, so ``au-face reconstruct --photos`` tracks photos in one process per core.
    one_core: bool = False
    #: :meth:`reconstruct_faces` gives every face of a photo (``au-face reconstruct --all-faces``).
    finds_every_face: bool = False
    #: the last video frame's shot, numbered from 0 at :meth:`reset` (reconstructors that find shot
    #: changes count them, and start tracking again at each).
    shot: int = 0

    @classmethod
    def create(cls, device: str = "cpu") -> CoarseReconstructor:
        """The default instance on ``device`` (what ``--reconstructor NAME`` builds)."""
        return cls()

    @property
    @abc.abstractmethod
    def topology(self) -> FaceTopology:
        """The mesh topology of the output vertices."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget tracking state (start of a new video)."""

    def close(self) -> None:  # noqa: B027 - a hook: most reconstructors hold nothing native
        """Free native resources (graphs, sessions); the next :meth:`reset` starts them again."""

    @abc.abstractmethod
    def reconstruct(self, frames: Sequence[np.ndarray], timestamps: Sequence[float], fps: float) -> CoarseFrames:
        """Reconstruct consecutive frames of one video (a chunk; state carries over between calls)."""

    def reconstruct_arrays(
        self, frames: Sequence[np.ndarray], timestamps: Sequence[float], fps: float
    ) -> dict[str, np.ndarray]:
        """:meth:`reconstruct` as :meth:`CoarseFrames.to_numpy` arrays; reconstructors that can
        give them without torch do (so ``au-face reconstruct`` tracks while the model loads). Those
        that find shot changes add each frame's shot number (:data:`SHOT_FIELD`)."""
        return self.reconstruct(frames, timestamps, fps).to_numpy()

    def reconstruct_still(self, rgb: np.ndarray, fps: float) -> dict[str, np.ndarray]:
        """One photo on its own (nothing tracked from or to other frames), as :meth:`reconstruct_arrays`
        gives a one-frame video; reconstructors with a cheaper way for single images override it."""
        self.reset()
        return self.reconstruct_arrays([rgb], [0.0], fps)

    def reconstruct_faces(self, rgb: np.ndarray, fps: float) -> dict[str, np.ndarray]:
        """Every face of one photo (at most :data:`EVERY_FACE`), one row each (as :meth:`reconstruct_still`
        gives one), left to right; one row without a face where there is none. Only reconstructors with
        :attr:`finds_every_face` do this; the others raise :class:`~au_face.errors.AUFaceError`."""
        raise AUFaceError(f"the {self.name} reconstructor reconstructs one face per photo, not every face")

    def faces_in_frame(self, rgb: np.ndarray, timestamp: float | None = None) -> list[np.ndarray]:
        """Every face found on the next frame of a video (tracked as :meth:`reconstruct` tracks), without
        choosing one: pixel points ``[V,3]`` each. Only reconstructors with :attr:`finds_every_face`."""
        raise AUFaceError(f"the {self.name} reconstructor follows one face per video, not every face")

    def every_face(self) -> AbstractContextManager[None]:
        """Meanwhile a video's frames are tracked for up to :data:`EVERY_FACE` faces (for
        :meth:`faces_in_frame` and :meth:`following`). Only reconstructors with :attr:`finds_every_face`."""
        raise AUFaceError(f"the {self.name} reconstructor follows one face per video, not every face")

    def following(self, track: FaceTrack) -> AbstractContextManager[None]:
        """Meanwhile :meth:`reconstruct` gives the face of ``track`` (from
        :func:`~au_face.coarse.tracks.scan_face_tracks`), not the one it would choose. Only reconstructors
        with :attr:`finds_every_face`."""
        raise AUFaceError(f"the {self.name} reconstructor follows one face per video, not every face")
