"""Synthetic 4D AU data from the ICT face model: AU tracks, meshes, noisy coarse input, rendered frames.

Each sequence is one random identity making facial actions while the head moves slightly:

* **Identity**: ``N(0, identity_sigma)`` coefficients on the first ``identity_modes`` ICT PCA modes,
  plus a skin albedo. Identities are disjoint between the train/val/test splits.
* **AU activations** ``[T,K]`` in ``[0,1]``: events with a smooth onset ramp, an apex hold and a
  smooth offset ramp (smoothstep), peak intensity uniform in ``intensity_range``. Each AU fires
  spontaneously at its own rate (:data:`SPONTANEOUS_OCCUPANCY`); then :data:`CO_OCCURRENCE_RULES`
  add follower events (AU6 after AU12, much more likely for a strong AU12; AU2 with AU1; AU17 with
  AU15; AU24 with AU23; AU25 with AU26; AU10 with AU12 or AU14; AU7 with AU6 or AU4) and :data:`EXCLUSION_RULES`
  remove most AU4 events that overlap AU1/AU2.
* **Unlabelled activity** (scaled by ``nuisance_activity``, 0 disables): speech bouts (jaw and lip
  shapes oscillating at syllable rate) and blinks, on ICT shapes that no labelled AU uses
  (:data:`NUISANCE_SHAPES`). Real faces talk and blink between AUs; without this, a model learns to
  erase any motion that is not a labelled AU.
* **Clean mesh**: ``neutral + identity + B(activations) + unlabelled activity``, with ``B`` the ICT
  FACS mapping (:meth:`ICTFaceModel.au_basis`) and expression weights clipped to ``[0, 1]``. Stored
  canonical (head pose removed), in centimetres.
* **Occurrence labels**: ``activation >= label_threshold``; a fraction ``unknown_fraction`` of the
  entries is set to -1.
* **Head pose**: smooth yaw/pitch/roll (sums of two slow sinusoids, at most ``head_rotation_deg``)
  about the head origin, a small smooth drift of the face centre and a scale such that the 68
  landmarks span ``face_fill`` of the crop. Image space is ``x`` right, ``y`` down (pixels), ``z``
  away from the viewer: ``posed = scale * v @ R.T + t`` as in :class:`CoarseFrames`.
* **Coarse input** (what a per-frame regressor would output), the noise model:

  1. expression jitter: ``w_coarse = w_clean + N(0, expression_noise)`` i.i.d. per frame and per
     blendshape, over all ``E`` ICT blendshapes (not clipped);
  2. identity error: a constant per-sequence offset ``N(0, identity_noise)`` on the identity
     coefficients (it cancels in ``S - S̄`` but not in the error to the ground truth);
  3. vertex noise: i.i.d. ``N(0, vertex_noise)`` centimetres per vertex coordinate and frame.

* **Frames**: the posed *clean* mesh rendered (:mod:`au_face.data.render`) at ``image_size`` with a
  random Lambert + ambient light per sequence over a random gradient background, by the
  ``render_backend`` the config names (``embree`` by default; ``pytorch3d`` is an optional environment).
* **Sim-to-real** (``coarse_source="mediapipe"``, :mod:`au_face.data.simreal`): instead of the noise
  model, the whole ICT face region is rendered with painted brows, lips, eyes and teeth in a random
  view (``view_range_deg``), scale and position, degraded like a camera image, and the real
  MediaPipe reconstructor runs on the frames. Its output is the coarse input (MediaPipe topology,
  its own pose removal and errors; frames without a detected face are invalid); the ground truth is
  the clean narrow-face mesh carried to MediaPipe's topology (:class:`TopologyMap`) and aligned to
  the MediaPipe template on the pose vertices. ``held_fraction`` of the sequences hold one
  expression throughout (so a neutral estimate cannot take a held smile for the identity).

On-disk layout under ``root`` (read by the synthetic datamodule)::

    coarse/<seq_id>.npz   CoarseFrames: noisy canonical vertices, pose, landmarks2d, crops, noisy expression
    labels/<seq_id>.csv   frame,AU01,AU02,...  (0-based frame, values 1/0/-1)
    gt/<seq_id>.npz       vertices, neutral, activations, expression (clean), identity coefficients, fingerprint
    synthetic.json        config, generator version, renderer, AUs, splits (written last)

Every sequence draws from its own ``np.random.Generator`` seeded by ``(seed, split, identity,
sequence)``, so any subset can be regenerated bit-identically. A sequence's ``gt`` file is deleted
before and written after its other two files and carries a fingerprint of the config, so a valid
``gt`` file certifies the whole sequence when an interrupted run is resumed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from au_face.assets import ICT_MODEL
from au_face.aus import AU_SETS, au_label, resolve_aus
from au_face.coarse.base import CoarseFrames
from au_face.data.render import Lighting, MeshRenderer, random_background, random_skin_albedo
from au_face.data.simreal import RENDER_REGION, Appearance, Degradation, face_albedo, paint_openings, sample_view, view_rotation
from au_face.errors import AUFaceError
from au_face.faces.correspondence import TopologyMap
from au_face.faces.ict import ICTFaceModel, ict_blendshape_weights
from au_face.faces.mediapipe import mediapipe_topology, to_pose_frame
from au_face.fileutil import atomic_save_npz, atomic_write_text
from au_face.renderers import BACKENDS, DEFAULT_BACKEND, renderer_name, require_backend

logger = logging.getLogger(__name__)

#: Bump when the generated data changes for the same config (caches made earlier are redone).
GENERATOR_VERSION = "4"
INDEX_NAME = "synthetic.json"
SPLITS = ("train", "val", "test")
COARSE_SOURCES = ("noise", "mediapipe")

#: Fraction of frames an AU's own (spontaneous) events cover, before follower events are added.
SPONTANEOUS_OCCUPANCY: dict[int, float] = {
    1: 0.22, 2: 0.07, 4: 0.42, 6: 0.08, 7: 0.15, 10: 0.12,
    12: 0.32, 14: 0.26, 15: 0.24, 17: 0.14, 23: 0.24, 24: 0.12,
}  # fmt: skip
#: Spontaneous occupancy of AUs not in :data:`SPONTANEOUS_OCCUPANCY`.
DEFAULT_OCCUPANCY = 0.2


@dataclass(frozen=True)
class CoOccurrence:
    """A leader event triggers a follower event of similar timing and intensity.

    The probability is ``probability`` for a leader peak ``>= strong_from`` and ``weak_probability``
    below it, so intensity-dependent couplings (AU12 -> AU6) and flat ones share one form.
    """

    leader: int
    follower: int
    probability: float
    weak_probability: float = 0.0
    strong_from: float = 0.0
    lag: tuple[int, int] = (0, 3)
    intensity_ratio: tuple[float, float] = (0.75, 1.0)


#: Applied in order; followers created by earlier rules can lead in later ones.
CO_OCCURRENCE_RULES: tuple[CoOccurrence, ...] = (
    CoOccurrence(12, 6, probability=0.9, weak_probability=0.12, strong_from=0.6, lag=(1, 4)),
    CoOccurrence(1, 2, probability=0.7, lag=(0, 2), intensity_ratio=(0.7, 1.05)),
    CoOccurrence(15, 17, probability=0.6, lag=(0, 3)),
    CoOccurrence(23, 24, probability=0.6, lag=(0, 3)),
    # FACS scores a jaw drop that parts the lips as 25+26: without this rule a model learns that an
    # open mouth is not AU25
    CoOccurrence(26, 25, probability=0.95, lag=(0, 1), intensity_ratio=(0.6, 1.0)),
    CoOccurrence(12, 10, probability=0.2, lag=(0, 4), intensity_ratio=(0.5, 0.9)),
    CoOccurrence(14, 10, probability=0.3, lag=(0, 4), intensity_ratio=(0.5, 0.9)),
    CoOccurrence(6, 7, probability=0.35, lag=(0, 3)),
    CoOccurrence(4, 7, probability=0.3, lag=(0, 3)),
)

#: ``(au, others, keep)``: an event of ``au`` overlapping an event of ``others`` survives with
#: probability ``keep`` (AU4 rarely co-occurs with AU1/AU2).
EXCLUSION_RULES: tuple[tuple[int, tuple[int, ...], float], ...] = ((4, (1, 2), 0.15),)

#: iBUG-68 landmark polygons of the eye and inner-mouth openings (holes in the ICT narrow face).
_CAVITY_LANDMARKS = (tuple(range(36, 42)), tuple(range(42, 48)), tuple(range(60, 68)))
_SPLIT_CODES = {split: i for i, split in enumerate(SPLITS)}
# Seed-stream tags keep identity and sequence generators apart.
_IDENTITY_STREAM, _SEQUENCE_STREAM = 1, 2


class SyntheticConfigError(AUFaceError, ValueError):
    """Raised for an invalid :class:`SyntheticConfig`."""


@dataclass(frozen=True)
class SyntheticConfig:
    """All knobs of the synthetic generator (JSON-serialisable with :meth:`to_dict`).

    Attributes:
        seed: base seed; every sequence derives its own generator from it.
        aus: AU numbers (or a set name such as ``"bp4d"``) of the activation tracks and labels.
        num_identities: identities in the train, val and test splits (disjoint).
        sequences_per_identity: sequences per identity.
        frames_per_sequence: frames ``T`` per sequence.
        fps: frame rate (timestamps are ``t / fps``).
        image_size: side of the rendered square crops in pixels.
        identity_modes: ICT identity PCA modes that vary.
        identity_sigma: standard deviation of the identity coefficients.
        occupancy_scale: multiplies the spontaneous AU event rates.
        nuisance_activity: scale of the unlabelled speech and blink activity (0 disables it).
        cooccurrence: apply :data:`CO_OCCURRENCE_RULES` and :data:`EXCLUSION_RULES`.
        intensity_range: range of event peak intensities.
        onset_frames / apex_frames / offset_frames: inclusive ranges of event phase lengths.
        label_threshold: activation at or above which an AU is labelled present.
        unknown_fraction: fraction of label entries replaced by -1.
        head_rotation_deg: largest yaw; pitch and roll get 0.6 and 0.4 of it.
        head_translation: largest drift of the face centre, as a fraction of the crop.
        face_fill: fraction of the crop the landmarks' larger extent spans.
        expression_noise: std of the per-frame i.i.d. expression-weight jitter of the coarse input.
        vertex_noise: std (cm) of the per-frame i.i.d. vertex noise of the coarse input.
        identity_noise: std of the per-sequence identity-coefficient error of the coarse input.
        coarse_source: ``noise`` (the noise model above, ICT topology) or ``mediapipe`` (sim-to-real:
            MediaPipe on realistic renders, MediaPipe topology).
        view_range_deg: largest base yaw, pitch and roll of a sequence (``mediapipe`` source).
        face_fill_range: range of ``face_fill`` drawn per sequence (``mediapipe`` source).
        held_fraction: share of sequences that hold one expression throughout.
        crop_size: side of the reconstructor's aligned crops (``mediapipe`` source).
        render_backend: what finds the visible triangles of the frames (:mod:`au_face.renderers`):
            ``embree`` (trimesh ray casting) or ``pytorch3d`` (needs the optional PyTorch3D
            environment to generate, not to load). Data made by one backend is never reused for the other.
    """

    seed: int = 0
    aus: tuple[int, ...] = AU_SETS["bp4d"]
    num_identities: tuple[int, int, int] = (10, 3, 3)
    sequences_per_identity: int = 4
    frames_per_sequence: int = 64
    fps: float = 25.0
    image_size: int = 112
    identity_modes: int = 20
    identity_sigma: float = 1.0
    occupancy_scale: float = 1.0
    cooccurrence: bool = True
    intensity_range: tuple[float, float] = (0.3, 1.0)
    onset_frames: tuple[int, int] = (4, 10)
    apex_frames: tuple[int, int] = (4, 24)
    offset_frames: tuple[int, int] = (4, 12)
    label_threshold: float = 0.25
    unknown_fraction: float = 0.0
    head_rotation_deg: float = 8.0
    head_translation: float = 0.03
    face_fill: float = 0.7
    expression_noise: float = 0.06
    vertex_noise: float = 0.01
    identity_noise: float = 0.2
    nuisance_activity: float = 1.0
    coarse_source: str = "noise"
    view_range_deg: tuple[float, float, float] = (35.0, 20.0, 15.0)
    face_fill_range: tuple[float, float] = (0.3, 0.65)
    held_fraction: float = 0.0
    crop_size: int = 64
    render_backend: str = DEFAULT_BACKEND

    def __post_init__(self) -> None:
        try:
            aus = tuple(resolve_aus(self.aus if isinstance(self.aus, str) else list(self.aus)))
        except AUFaceError as err:
            raise SyntheticConfigError(f"synthetic config: {err}") from err
        for au in aus:
            try:
                ict_blendshape_weights(au)
            except KeyError:
                message = f"{au_label(au)} has no ICT expression shapes; it cannot be synthesised"
                raise SyntheticConfigError(message) from None
        object.__setattr__(self, "aus", aus)
        for name in ("num_identities", "intensity_range", "onset_frames", "apex_frames", "offset_frames", "view_range_deg", "face_fill_range"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self._validate()

    def _validate(self) -> None:
        low, high = self.intensity_range
        problems = {
            "num_identities must be 3 positive counts (train, val, test)":
                len(self.num_identities) != 3 or min(self.num_identities) < 1,
            "sequences_per_identity must be >= 1": self.sequences_per_identity < 1,
            "frames_per_sequence must be >= 2": self.frames_per_sequence < 2,
            "fps must be positive": self.fps <= 0,
            "image_size must be in [16, 1024]": not 16 <= self.image_size <= 1024,
            "identity_modes must be in [0, 50] (the ICT light model has 50)": not 0 <= self.identity_modes <= 50,
            "intensity_range must satisfy 0 < low <= high <= 1": not 0 < low <= high <= 1,
            "label_threshold must be in (0, 1)": not 0 < self.label_threshold < 1,
            "unknown_fraction must be in [0, 1)": not 0 <= self.unknown_fraction < 1,
            "face_fill must be in (0, 1.5]": not 0 < self.face_fill <= 1.5,
            f"coarse_source must be one of {COARSE_SOURCES}": self.coarse_source not in COARSE_SOURCES,
            "held_fraction must be in [0, 1]": not 0 <= self.held_fraction <= 1,
            "face_fill_range must be (low, high) with 0 < low <= high <= 1.5":
                len(self.face_fill_range) != 2 or not 0 < self.face_fill_range[0] <= self.face_fill_range[1] <= 1.5,
            "crop_size must be in [0, 512]": not 0 <= self.crop_size <= 512,
            f"render_backend must be one of {BACKENDS}": self.render_backend not in BACKENDS,
        }  # fmt: skip
        for name in ("onset_frames", "apex_frames", "offset_frames"):
            span = getattr(self, name)
            bad_span = len(span) != 2 or not 1 <= span[0] <= span[1]
            problems[f"{name} must be (low, high) with 1 <= low <= high"] = bad_span
        for name in ("identity_sigma", "occupancy_scale", "head_rotation_deg", "head_translation",
                     "expression_noise", "vertex_noise", "identity_noise", "nuisance_activity"):  # fmt: skip
            problems[f"{name} must be >= 0"] = getattr(self, name) < 0
        failed = [message for message, bad in problems.items() if bad]
        if failed:
            raise SyntheticConfigError(f"invalid synthetic config: {'; '.join(failed)}")

    def to_dict(self) -> dict:
        """JSON-compatible dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> SyntheticConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SyntheticConfigError(f"unknown synthetic config keys {unknown}")
        return cls(**data)

    @property
    def topology(self) -> str:
        """Topology of the coarse input and ground truth: ``ict`` (noise model) or ``mediapipe``."""
        return "mediapipe" if self.coarse_source == "mediapipe" else "ict"

    @property
    def crop_side(self) -> int:
        """Side of the stored crops."""
        return self.crop_size if self.coarse_source == "mediapipe" else self.image_size

    def jobs(self, split: str) -> list[tuple[str, int, int]]:
        """``(split, identity, sequence)`` of every sequence of one split, in generation order."""
        return [
            (split, identity, seq)
            for identity in range(self.num_identities[_SPLIT_CODES[split]])
            for seq in range(self.sequences_per_identity)
        ]


def sequence_id(split: str, identity: int, sequence: int) -> str:
    """``<split>_id<NNN>_s<NN>``, e.g. ``train_id003_s01``."""
    return f"{split}_id{identity:03d}_s{sequence:02d}"


@dataclass
class SyntheticIndex:
    """A complete synthetic dataset on disk (the content of ``synthetic.json`` plus its root)."""

    root: Path
    config: SyntheticConfig
    renderer: str
    generator_version: str
    splits: dict[str, list[str]]
    identities: dict[str, str]
    expression_names: list[str] = field(default_factory=list)

    @property
    def aus(self) -> tuple[int, ...]:
        return self.config.aus

    def coarse_path(self, seq_id: str) -> Path:
        return self.root / "coarse" / f"{seq_id}.npz"

    def labels_path(self, seq_id: str) -> Path:
        return self.root / "labels" / f"{seq_id}.csv"

    def gt_path(self, seq_id: str) -> Path:
        return self.root / "gt" / f"{seq_id}.npz"

    def to_json(self) -> str:
        return json.dumps(
            {
                "generator_version": self.generator_version,
                "renderer": self.renderer,
                "topology": self.config.topology,
                "aus": list(self.aus),
                "au_labels": [au_label(a) for a in self.aus],
                "config": self.config.to_dict(),
                "splits": self.splits,
                "identities": self.identities,
                "expression_names": self.expression_names,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, root: Path, text: str) -> SyntheticIndex:
        data = json.loads(text)
        return cls(
            root=Path(root),
            config=SyntheticConfig.from_dict(data["config"]),
            renderer=str(data["renderer"]),
            generator_version=str(data["generator_version"]),
            splits={k: list(v) for k, v in data["splits"].items()},
            identities=dict(data["identities"]),
            expression_names=list(data.get("expression_names", [])),
        )


def load_synthetic_index(root: str | Path, config: SyntheticConfig | None = None) -> SyntheticIndex | None:
    """The dataset at ``root``, or None when absent, incomplete, or made differently.

    "Made differently" means another generator version or renderer, or (when given) another config.
    """
    root = Path(root)
    path = root / INDEX_NAME
    if not path.is_file():
        return None
    try:
        index = SyntheticIndex.from_json(root, path.read_text())
    except (ValueError, KeyError, TypeError) as err:
        logger.warning("ignoring unreadable %s: %s", path, err)
        return None
    if index.generator_version != GENERATOR_VERSION or index.renderer != renderer_name(index.config.render_backend):
        return None
    if config is not None and index.config.to_dict() != config.to_dict():
        return None
    fingerprint = config_fingerprint(index.config)
    for ids in index.splits.values():
        for seq_id in ids:
            paths = (index.coarse_path(seq_id), index.labels_path(seq_id), index.gt_path(seq_id))
            if not all(p.is_file() for p in paths) or _stored_fingerprint(index.gt_path(seq_id)) != fingerprint:
                return None
    return index


def _stored_fingerprint(gt_path: Path) -> str | None:
    try:
        with np.load(gt_path) as gt:
            return str(gt["fingerprint"])
    except (OSError, ValueError, KeyError, EOFError):
        return None


def generate_synthetic_dataset(
    root: str | Path,
    ict_path: str | Path | None,
    config: SyntheticConfig | None = None,
    workers: int | None = None,
) -> SyntheticIndex:
    """Generate (or reuse, or finish) the synthetic dataset at ``root``.

    Args:
        root: output folder.
        ict_path: ICT-FaceKit npz or FaceXModel folder (None: ``$AU_FACE_ICT``).
        config: generator settings (default :class:`SyntheticConfig`).
        workers: processes for generation (default: up to 2, one for small jobs). The output does
            not depend on it.

    A complete dataset made by the same config is returned as is (whatever loads here). Otherwise
    sequences already written completely by an interrupted run of the same config are kept and the
    rest generated; a ``render_backend`` that does not load here raises
    :class:`~au_face.renderers.RendererBackendError` before anything is written.
    """
    root = Path(root)
    config = config or SyntheticConfig()
    cached = load_synthetic_index(root, config)
    if cached is not None:
        return cached
    require_backend(config.render_backend)
    ict_path = ICT_MODEL.resolve(ict_path)
    root.mkdir(parents=True, exist_ok=True)
    (root / INDEX_NAME).unlink(missing_ok=True)
    plan = [job for split in SPLITS for job in config.jobs(split)]
    todo = [job for job in plan if not _sequence_complete(root, sequence_id(*job), config)]
    logger.info("synthetic data: %d of %d sequences to generate in %s", len(todo), len(plan), root)

    start = time.perf_counter()
    render_seconds = _run_jobs(root, ict_path, config, todo, workers)
    if todo:
        frames = len(todo) * config.frames_per_sequence
        logger.info(
            "synthetic data: %d sequences in %.1f s (render %.1f ms/frame)",
            len(todo), time.perf_counter() - start, 1000 * render_seconds / frames,
        )

    model = ICTFaceModel.load(ict_path)
    index = SyntheticIndex(
        root=root,
        config=config,
        renderer=renderer_name(config.render_backend),
        generator_version=GENERATOR_VERSION,
        splits={split: [sequence_id(*job) for job in config.jobs(split)] for split in SPLITS},
        identities={sequence_id(*job): f"{job[0]}-{job[1]:03d}" for job in plan},
        expression_names=list(model.expression_names),
    )
    atomic_write_text(root / INDEX_NAME, index.to_json())
    return index


# --------------------------------------------------------------------------------------------
# AU activation tracks


@dataclass(frozen=True)
class _Event:
    start: int
    onset: int
    apex: int
    offset: int
    peak: float

    @property
    def end(self) -> int:
        return self.start + self.onset + self.apex + self.offset

    def overlaps(self, other: _Event) -> bool:
        return self.start < other.end and other.start < self.end

    def profile(self, num_frames: int) -> np.ndarray:
        """``[T]`` activation: smoothstep up over ``onset``, hold ``apex``, smoothstep down over ``offset``."""
        t = np.arange(num_frames, dtype=np.float64) - self.start
        rise = _smoothstep(t / self.onset)
        fall = _smoothstep((self.onset + self.apex + self.offset - t) / self.offset)
        return self.peak * np.minimum(rise, fall)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _random_event(start: int, rng: np.random.Generator, config: SyntheticConfig) -> _Event:
    return _Event(
        start=start,
        onset=int(rng.integers(config.onset_frames[0], config.onset_frames[1] + 1)),
        apex=int(rng.integers(config.apex_frames[0], config.apex_frames[1] + 1)),
        offset=int(rng.integers(config.offset_frames[0], config.offset_frames[1] + 1)),
        peak=float(rng.uniform(*config.intensity_range)),
    )


def _spontaneous_events(occupancy: float, rng: np.random.Generator, config: SyntheticConfig) -> list[_Event]:
    """A renewal process of events covering about ``occupancy`` of the frames."""
    if occupancy <= 0:
        return []
    occupancy = min(occupancy, 0.95)
    mean_length = sum((lo + hi) / 2 for lo, hi in (config.onset_frames, config.apex_frames, config.offset_frames))
    mean_gap = mean_length * (1 - occupancy) / occupancy
    events = []
    t = -int(rng.uniform(0, mean_length + mean_gap))  # start in the stationary regime
    while t < config.frames_per_sequence:
        event = _random_event(t, rng, config)
        if event.end > 0:
            events.append(event)
        t = event.end + int(round(rng.exponential(mean_gap)))
    return events


def _follower(leader: _Event, rule: CoOccurrence, rng: np.random.Generator, config: SyntheticConfig) -> _Event:
    jitter = rng.integers(-1, 2, size=3)
    ratio = rng.uniform(*rule.intensity_ratio)
    return _Event(
        start=leader.start + int(rng.integers(rule.lag[0], rule.lag[1] + 1)),
        onset=max(1, leader.onset + int(jitter[0])),
        apex=max(1, leader.apex + int(jitter[1]) * 2),
        offset=max(1, leader.offset + int(jitter[2])),
        peak=float(np.clip(leader.peak * ratio, config.intensity_range[0], 1.0)),
    )


#: ICT shapes of unlabelled activity: speech (jaw and lips) and blinks.
NUISANCE_SHAPES = {
    "speech": ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLowerDown_L", "mouthLowerDown_R"),
    "blink": ("eyeBlink_L", "eyeBlink_R"),
}


def sample_nuisance(
    expression_names: Sequence[str], excluded: set[str], num_frames: int, fps: float, rng: np.random.Generator, scale: float
) -> np.ndarray:
    """``[T,E]`` expression weights of unlabelled speech bouts and blinks on shapes not in ``excluded``.

    Speech: bouts of 1–3 s in about half of the time, jaw and lip shapes oscillating at 3–5
    syllables per second with random amplitudes. Blinks: every 2–6 s, closing over ~3 frames.
    """
    out = np.zeros((num_frames, len(expression_names)), dtype=np.float32)
    if scale <= 0:
        return out
    index = {name: i for i, name in enumerate(expression_names)}
    t = np.arange(num_frames) / fps
    speaking = np.zeros(num_frames)
    start = rng.uniform(-2.0, 1.0)
    while start < t[-1]:
        length = rng.uniform(1.0, 3.0)
        speaking += _smoothstep((t - start) / 0.2) * _smoothstep((start + length - t) / 0.2)
        start += length + rng.uniform(0.5, 3.0)
    for name in NUISANCE_SHAPES["speech"]:
        if name in index and name not in excluded:
            rate, phase, amplitude = rng.uniform(3.0, 5.0), rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.35)
            out[:, index[name]] += scale * amplitude * speaking * 0.5 * (1 + np.sin(2 * np.pi * rate * t + phase))
    blink = np.zeros(num_frames)
    moment = rng.uniform(0.0, 3.0)
    while moment < t[-1]:
        blink = np.maximum(blink, np.exp(-0.5 * ((t - moment) / 0.05) ** 2))
        moment += rng.uniform(2.0, 6.0)
    for name in NUISANCE_SHAPES["blink"]:
        if name in index and name not in excluded:
            out[:, index[name]] += scale * blink
    return out


def sample_au_activations(aus: Sequence[int], rng: np.random.Generator, config: SyntheticConfig) -> np.ndarray:
    """``[T,K]`` float32 AU activation tracks in ``[0,1]`` (see the module docstring)."""
    events = {
        au: _spontaneous_events(config.occupancy_scale * SPONTANEOUS_OCCUPANCY.get(au, DEFAULT_OCCUPANCY), rng, config)
        for au in aus
    }
    if config.cooccurrence:
        for rule in CO_OCCURRENCE_RULES:
            if rule.leader not in events or rule.follower not in events:
                continue
            for leader in list(events[rule.leader]):
                p = rule.probability if leader.peak >= rule.strong_from else rule.weak_probability
                if rng.random() < p:
                    events[rule.follower].append(_follower(leader, rule, rng, config))
        for au, others, keep in EXCLUSION_RULES:
            if au not in events:
                continue
            rivals = [e for other in others for e in events.get(other, [])]
            events[au] = [e for e in events[au] if not any(e.overlaps(r) for r in rivals) or rng.random() < keep]
    tracks = np.zeros((config.frames_per_sequence, len(aus)), dtype=np.float64)
    for k, au in enumerate(aus):
        for event in events[au]:
            tracks[:, k] = np.maximum(tracks[:, k], event.profile(config.frames_per_sequence))
    return np.clip(tracks, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# head motion


def _smooth_signal(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """``[T]`` slow wobble in ``[-1, 1]``: two sinusoids of 0.1-0.6 Hz with random phases and weights."""
    t = np.arange(num_frames) / fps
    freqs = rng.uniform(0.1, 0.6, size=2)
    phases = rng.uniform(0, 2 * np.pi, size=2)
    weights = rng.uniform(0.3, 1.0, size=2)
    wave = (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])).sum(0)
    return wave / weights.sum()


#: Model frame (y up, face looking along +z) -> image frame (y down, z away from the viewer).
_MODEL_TO_IMAGE = np.diag([1.0, -1.0, -1.0])


def sample_head_pose(
    landmarks: np.ndarray, rng: np.random.Generator, config: SyntheticConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth rigid pose ``(rotation [T,3,3], translation [T,3], scale [T])`` into crop pixels.

    ``landmarks`` ``[68,3]`` of the neutral identity set the face centre and size.
    """
    n, size = config.frames_per_sequence, config.image_size
    amplitude = np.radians(config.head_rotation_deg) * np.array([0.6, 1.0, 0.4])  # pitch (x), yaw (y), roll (z)
    angles = np.stack([a * _smooth_signal(n, config.fps, rng) for a in amplitude], axis=1)
    rotation = _MODEL_TO_IMAGE @ Rotation.from_euler("xyz", angles).as_matrix()
    extent = float(np.ptp(landmarks[:, :2], axis=0).max())
    base_scale = config.face_fill * size / extent * rng.uniform(0.95, 1.05)
    scale = base_scale * (1 + 0.02 * _smooth_signal(n, config.fps, rng))
    drift = config.head_translation * size * np.stack([_smooth_signal(n, config.fps, rng) for _ in range(2)], axis=1)
    centre = landmarks.mean(axis=0)
    target = np.concatenate([size / 2 + drift, np.zeros((n, 1))], axis=1)
    translation = target - scale[:, None] * (rotation @ centre)
    return rotation.astype(np.float32), translation.astype(np.float32), scale.astype(np.float32)


def sample_view_pose(
    landmarks: np.ndarray, rng: np.random.Generator, config: SyntheticConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`sample_head_pose` for whole frames: a random base view (``view_range_deg``)
    plus the slow wobble, a random size (``face_fill_range``) and an off-centre position."""
    n, size = config.frames_per_sequence, config.image_size
    amplitude = np.radians(config.head_rotation_deg) * np.array([0.6, 1.0, 0.4])
    wobble = np.stack([a * _smooth_signal(n, config.fps, rng) for a in amplitude], axis=1)
    rotation = _MODEL_TO_IMAGE @ view_rotation(sample_view(rng, config.view_range_deg), wobble)
    extent = float(np.ptp(landmarks[:, :2], axis=0).max())
    base_scale = rng.uniform(*config.face_fill_range) * size / extent
    scale = base_scale * (1 + 0.02 * _smooth_signal(n, config.fps, rng))
    offset = rng.uniform(-0.1, 0.1, size=2) * size
    drift = config.head_translation * size * np.stack([_smooth_signal(n, config.fps, rng) for _ in range(2)], axis=1)
    target = np.concatenate([size / 2 + offset + drift, np.zeros((n, 1))], axis=1)
    translation = target - scale[:, None] * (rotation @ landmarks.mean(axis=0))
    return rotation.astype(np.float32), translation.astype(np.float32), scale.astype(np.float32)


# --------------------------------------------------------------------------------------------
# one sequence


def coarse_from_clean(
    model: ICTFaceModel, identity: np.ndarray, expression: np.ndarray, rng: np.random.Generator, config: SyntheticConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy coarse vertices ``[T,V,3]`` and expression weights ``[T,E]`` from clean ones.

    Applies the noise model of the module docstring: per-frame expression jitter, one identity
    error for the whole sequence, per-frame vertex noise (all Gaussian, float32 out).
    """
    noisy_expression = expression + rng.normal(0.0, config.expression_noise, size=expression.shape)
    noisy_identity = identity + rng.normal(0.0, config.identity_noise, size=identity.shape)
    vertices = model.shape(noisy_identity, noisy_expression)
    vertices = vertices + rng.normal(0.0, config.vertex_noise, size=vertices.shape)
    return vertices.astype(np.float32), noisy_expression.astype(np.float32)


def _identity_rng(config: SyntheticConfig, split: str, identity: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, _IDENTITY_STREAM, _SPLIT_CODES[split], identity])


def _sequence_rng(config: SyntheticConfig, split: str, identity: int, sequence: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, _SEQUENCE_STREAM, _SPLIT_CODES[split], identity, sequence])


@dataclass
class SyntheticSequence:
    """One generated sequence in memory (what :func:`generate_synthetic_dataset` writes).

    Attributes:
        seq_id: ``<split>_id<NNN>_s<NN>``.
        coarse: the noisy coarse record with pose, landmarks, rendered crops and noisy expression.
        vertices: ``[T,V,3]`` clean canonical vertices (cm).
        activations: ``[T,K]`` AU activations; labels: ``[T,K]`` int8 1/0/-1.
        expression: ``[T,E]`` clean expression weights; identity: ``[I]`` identity coefficients.
        neutral: ``[V,3]`` the identity's neutral mesh in the ground truth's frame.
        render_seconds: time spent rendering the crops.
    """

    seq_id: str
    coarse: CoarseFrames
    vertices: np.ndarray
    activations: np.ndarray
    labels: np.ndarray
    expression: np.ndarray
    identity: np.ndarray
    neutral: np.ndarray
    render_seconds: float


class SequenceSimulator:
    """Simulates the sequences of one config (holds the ICT model, AU basis and renderer; with the
    ``mediapipe`` coarse source also the face-region model, the reconstructor and the ICT →
    MediaPipe map)."""

    def __init__(self, ict_path: str | Path, config: SyntheticConfig) -> None:
        full = ICTFaceModel.load(ict_path)
        self.model = full.restrict("narrow")
        self.config = config
        self.basis = self.model.au_basis(config.aus)  # [K,E]
        self.labelled_shapes = {name for au in config.aus for name in ict_blendshape_weights(au)}
        self.fingerprint = config_fingerprint(config)
        if config.coarse_source == "mediapipe":
            from au_face.coarse.mediapipe import MediaPipeReconstructor

            self.render_model = full.restrict(RENDER_REGION)
            self.reconstructor = MediaPipeReconstructor(crop_size=config.crop_size)
            self.topology_map = TopologyMap.between(self.model.topology(), mediapipe_topology())
        else:
            self.render_model = self.model
        self.renderer = MeshRenderer(self.render_model.triangles, config.image_size, config.render_backend)

    def simulate(self, split: str, identity: int, sequence: int) -> SyntheticSequence:
        """Sequence ``sequence`` of identity ``identity`` of ``split`` (deterministic)."""
        config, model = self.config, self.model
        id_rng = _identity_rng(config, split, identity)
        id_coeffs = id_rng.normal(0.0, config.identity_sigma, size=config.identity_modes).astype(np.float32)
        albedo = random_skin_albedo(id_rng)
        rng = _sequence_rng(config, split, identity, sequence)
        n, k = config.frames_per_sequence, len(config.aus)

        activations = sample_au_activations(config.aus, rng, config)
        if config.held_fraction > 0 and rng.random() < config.held_fraction:
            activations = np.repeat(activations[[int(activations.sum(axis=1).argmax())]], n, axis=0)
        nuisance = sample_nuisance(model.expression_names, self.labelled_shapes, n, config.fps, rng, config.nuisance_activity)
        expression = np.clip(activations @ self.basis + nuisance, 0.0, 1.0).astype(np.float32)
        vertices = model.shape(id_coeffs, expression)  # [T,V,3] canonical clean
        labels = (activations >= config.label_threshold).astype(np.int8)
        labels[rng.random((n, k)) < config.unknown_fraction] = -1

        neutral = model.shape(id_coeffs)
        if config.coarse_source == "mediapipe":
            record, render_seconds = self._reconstructed(id_coeffs, expression, albedo, id_rng, rng)
            vertices, neutral = self.ground_truth(vertices, neutral), self.ground_truth(neutral, neutral)
        else:
            record, render_seconds = self._noisy(id_coeffs, expression, vertices, neutral, albedo, rng)
        return SyntheticSequence(
            seq_id=sequence_id(split, identity, sequence),
            coarse=record,
            vertices=vertices,
            activations=activations,
            labels=labels,
            expression=expression,
            identity=id_coeffs,
            neutral=neutral,
            render_seconds=render_seconds,
        )

    def _noisy(
        self,
        id_coeffs: np.ndarray,
        expression: np.ndarray,
        vertices: np.ndarray,
        neutral: np.ndarray,
        albedo: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[CoarseFrames, float]:
        """Noise-model coarse record (ICT topology) with rendered crops of the clean ``vertices``."""
        config, model, n = self.config, self.model, len(expression)
        rotation, translation, scale = sample_head_pose(neutral[model.landmarks68], rng, config)
        posed = scale[:, None, None] * vertices @ rotation.transpose(0, 2, 1) + translation[:, None]
        landmarks2d = np.ascontiguousarray(posed[:, model.landmarks68, :2], dtype=np.float32)

        coarse, noisy_expression = coarse_from_clean(model, id_coeffs, expression, rng, config)

        lighting = Lighting.random(rng, albedo=albedo)
        background = random_background(config.image_size, rng)
        start = time.perf_counter()
        crops = np.stack([
            self.renderer.render(posed[t], lighting, background,
                                 cavities=[landmarks2d[t, list(ids)] for ids in _CAVITY_LANDMARKS]).image
            for t in range(n)
        ])  # fmt: skip
        render_seconds = time.perf_counter() - start
        record = CoarseFrames(
            vertices=torch.from_numpy(coarse),
            valid=torch.ones(n, dtype=torch.bool),
            rotation=torch.from_numpy(rotation),
            translation=torch.from_numpy(translation),
            scale=torch.from_numpy(scale),
            landmarks2d=torch.from_numpy(landmarks2d),
            timestamps=torch.arange(n, dtype=torch.float64) / config.fps,
            fps=float(config.fps),
            topology="ict",
            expression=torch.from_numpy(noisy_expression),
            crops=torch.from_numpy(crops),
        )
        return record, render_seconds

    def _reconstructed(
        self,
        id_coeffs: np.ndarray,
        expression: np.ndarray,
        albedo: np.ndarray,
        id_rng: np.random.Generator,
        rng: np.random.Generator,
    ) -> tuple[CoarseFrames, float]:
        """Sim-to-real: MediaPipe on realistic renders; returns the record and the seconds spent rendering."""
        config, face, n = self.config, self.render_model, len(expression)
        neutral = face.shape(id_coeffs)
        appearance = Appearance.random(id_rng, albedo)
        vertex_albedo = face_albedo(neutral, face.landmarks68, appearance)
        rotation, translation, scale = sample_view_pose(neutral[face.landmarks68], rng, config)
        posed = scale[:, None, None] * face.shape(id_coeffs, expression) @ rotation.transpose(0, 2, 1) + translation[:, None]
        lighting = Lighting.random(rng, albedo=albedo)
        background = random_background(config.image_size, rng)
        degradation = Degradation.random(rng)
        light = lighting.ambient + (1 - lighting.ambient) * lighting.intensity * 0.6
        start = time.perf_counter()
        frames = []
        for t in range(n):
            shot = self.renderer.render(posed[t], lighting, background, vertex_albedo=vertex_albedo)
            image = paint_openings(shot.image, shot.mask, posed[t, face.landmarks68, :2], appearance, light)
            frames.append(degradation.apply(image, rng))
        render_seconds = time.perf_counter() - start
        self.reconstructor.reset()
        record = self.reconstructor.reconstruct(frames, np.arange(n) / config.fps, config.fps)
        return record, render_seconds

    def ground_truth(self, vertices: np.ndarray, neutral: np.ndarray) -> np.ndarray:
        """Clean narrow-face meshes ``[T,V,3]`` on MediaPipe's topology, in the frame the
        reconstructor's pose removal gives: the identity's neutral fitted to the MediaPipe template
        on the pose vertices (one similarity per sequence, so expressions keep their motion)."""
        return to_pose_frame(self.topology_map(vertices), self.topology_map(neutral))

    def write(self, root: Path, split: str, identity: int, sequence: int) -> float:
        """Simulate one sequence and write its files (``gt`` last); returns seconds spent rendering."""
        seq = self.simulate(split, identity, sequence)
        gt_path = root / "gt" / f"{seq.seq_id}.npz"
        gt_path.unlink(missing_ok=True)
        header = ",".join(["frame", *(au_label(a) for a in self.config.aus)])
        rows = [",".join([str(t), *(str(int(v)) for v in seq.labels[t])]) for t in range(len(seq.labels))]
        atomic_write_text(root / "labels" / f"{seq.seq_id}.csv", "\n".join([header, *rows]) + "\n")
        seq.coarse.save(root / "coarse" / f"{seq.seq_id}.npz")
        atomic_save_npz(
            gt_path,
            vertices=seq.vertices,
            activations=seq.activations,
            expression=seq.expression,
            identity=seq.identity,
            neutral=seq.neutral,
            fingerprint=np.array(self.fingerprint),
        )
        return seq.render_seconds


_WORKER: SequenceSimulator | None = None


def _init_worker(ict_path: Path, config: SyntheticConfig) -> None:
    global _WORKER
    torch.set_num_threads(1)
    _WORKER = SequenceSimulator(ict_path, config)


def _work(root: Path, job: tuple[str, int, int]) -> float:
    assert _WORKER is not None
    return _WORKER.write(root, *job)


def _run_jobs(
    root: Path, ict_path: Path, config: SyntheticConfig, jobs: list[tuple[str, int, int]], workers: int | None
) -> float:
    """Generate ``jobs``; returns total render seconds.

    Several workers are spawned processes (the renderer holds the GIL; forking would copy Embree's
    and OpenMP's thread state). If they cannot start, e.g. a script without an
    ``if __name__ == "__main__":`` guard, generation falls back to this process.
    """
    if not jobs:
        return 0.0
    if workers is None:
        workers = 1 if len(jobs) < 8 else min(2, os.cpu_count() or 1)
    if workers > 1:
        context = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(
                workers, mp_context=context, initializer=_init_worker, initargs=(ict_path, config)
            ) as pool:
                return sum(pool.map(_work, [root] * len(jobs), jobs))
        except BrokenProcessPool:
            logger.warning("synthetic data: worker processes failed to start; generating in this process")
            jobs = [job for job in jobs if not _sequence_complete(root, sequence_id(*job), config)]
    simulator = SequenceSimulator(ict_path, config)
    return sum(simulator.write(root, *job) for job in jobs)


# --------------------------------------------------------------------------------------------
# resume support


def config_fingerprint(config: SyntheticConfig) -> str:
    """Short hash of the config, generator version, renderer and the AU → ICT-shape weights
    (stored in every ``gt`` file, so a changed mapping regenerates the data).

    ``render_backend`` enters as the renderer's name, not as a config key, so data made before the
    key existed (all ``embree``) keeps its fingerprint.
    """
    au_shapes = {str(au): ict_blendshape_weights(au) for au in config.aus}
    settings = {k: v for k, v in config.to_dict().items() if k != "render_backend"}
    renderer = renderer_name(config.render_backend)
    stamp = {"generator_version": GENERATOR_VERSION, "renderer": renderer, "config": settings, "au_shapes": au_shapes}
    payload = json.dumps(stamp, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def _sequence_complete(root: Path, seq_id: str, config: SyntheticConfig) -> bool:
    """``seq_id`` was written completely by a run of ``config``: its ``gt`` file carries the config's
    fingerprint and all three files load with the expected shapes."""
    n = config.frames_per_sequence
    try:
        with np.load(root / "gt" / f"{seq_id}.npz") as gt:
            gt_ok = (
                str(gt["fingerprint"]) == config_fingerprint(config)
                and gt["vertices"].shape[0] == n
                and gt["activations"].shape == (n, len(config.aus))
            )
        if not gt_ok:
            return False
        coarse = CoarseFrames.load(root / "coarse" / f"{seq_id}.npz")
        lines = (root / "labels" / f"{seq_id}.csv").read_text().splitlines()
    except (OSError, ValueError, KeyError, EOFError, AUFaceError):
        return False
    side = config.crop_side
    crops_ok = coarse.crops is not None and tuple(coarse.crops.shape) == (n, side, side, 3)
    return crops_ok and len(coarse) == n and len(lines) == n + 1
