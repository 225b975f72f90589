"""The synthetic generator's settings (:class:`SyntheticConfig`) and the AU event model's rates and rules."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from au_face.aus import AU_SETS, au_label, resolve_aus
from au_face.data.synthetic.rasterizers import BACKENDS, DEFAULT_BACKEND, renderer_name
from au_face.errors import AUFaceError
from au_face.faces.ict import ict_blendshape_weights

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

SPLIT_CODES = {split: i for i, split in enumerate(SPLITS)}


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
        render_backend: what finds the visible triangles of the frames (:mod:`au_face.data.synthetic.rasterizers`):
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
        for name in (
            "num_identities",
            "intensity_range",
            "onset_frames",
            "apex_frames",
            "offset_frames",
            "view_range_deg",
            "face_fill_range",
        ):
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
            for identity in range(self.num_identities[SPLIT_CODES[split]])
            for seq in range(self.sequences_per_identity)
        ]


def sequence_id(split: str, identity: int, sequence: int) -> str:
    """``<split>_id<NNN>_s<NN>``, e.g. ``train_id003_s01``."""
    return f"{split}_id{identity:03d}_s{sequence:02d}"


def config_fingerprint(config: SyntheticConfig, renderer: str | None = None) -> str:
    """Short hash of the config, generator version, renderer and the AU → ICT-shape weights
    (stored in every ``gt`` file, so a changed mapping regenerates the data).

    ``render_backend`` enters as the renderer's name, not as a config key, so data made before the
    key existed (all ``embree``) keeps its fingerprint. ``renderer`` (default: the one this machine
    would use) checks data made elsewhere.
    """
    au_shapes = {str(au): ict_blendshape_weights(au) for au in config.aus}
    settings = {k: v for k, v in config.to_dict().items() if k != "render_backend"}
    renderer = renderer or renderer_name(config.render_backend)
    stamp = {"generator_version": GENERATOR_VERSION, "renderer": renderer, "config": settings, "au_shapes": au_shapes}
    payload = json.dumps(stamp, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]
