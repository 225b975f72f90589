"""One synthetic sequence: identity, AU tracks, clean and coarse meshes, rendered frames."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from au_face.aus import au_label
from au_face.coarse.base import CoarseFrames
from au_face.data.synthetic.config import SPLIT_CODES, SyntheticConfig, config_fingerprint, sequence_id
from au_face.data.synthetic.motion import sample_au_activations, sample_head_pose, sample_nuisance, sample_view_pose
from au_face.data.synthetic.shading import Lighting, MeshRenderer, random_background, random_skin_albedo
from au_face.data.synthetic.simreal import RENDER_REGION, Appearance, Degradation, face_albedo, paint_openings
from au_face.faces.correspondence import TopologyMap
from au_face.faces.ict import ICTFaceModel, ict_blendshape_weights
from au_face.faces.mediapipe import mediapipe_topology, to_pose_frame
from au_face.utils.files import atomic_save_npz, atomic_write_text

#: iBUG-68 landmark polygons of the eye and inner-mouth openings (holes in the ICT narrow face).
_CAVITY_LANDMARKS = (tuple(range(36, 42)), tuple(range(42, 48)), tuple(range(60, 68)))
# Seed-stream tags keep identity and sequence generators apart.
_IDENTITY_STREAM, _SEQUENCE_STREAM = 1, 2


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
    return np.random.default_rng([config.seed, _IDENTITY_STREAM, SPLIT_CODES[split], identity])


def _sequence_rng(config: SyntheticConfig, split: str, identity: int, sequence: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, _SEQUENCE_STREAM, SPLIT_CODES[split], identity, sequence])


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
        nuisance = sample_nuisance(
            model.expression_names, self.labelled_shapes, n, config.fps, rng, config.nuisance_activity
        )
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
        posed = (
            scale[:, None, None] * face.shape(id_coeffs, expression) @ rotation.transpose(0, 2, 1)
            + translation[:, None]
        )
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
        record = self.reconstructor.reconstruct(frames, (np.arange(n) / config.fps).tolist(), config.fps)
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
