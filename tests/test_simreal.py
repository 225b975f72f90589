"""Sim-to-real data: MediaPipe run on painted ICT renders, ground truth on MediaPipe's topology,
the neutral reference in the datamodule, single-frame items and held expressions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mediapipe")

from au_face.data.datamodules.synthetic import SyntheticDataModule
from au_face.data.synthetic import simreal
from au_face.data.synthetic.config import SyntheticConfig
from au_face.data.synthetic.generate import generate_synthetic_dataset
from au_face.data.synthetic.simulate import SequenceSimulator
from au_face.faces.ict import ICTFaceModel
from au_face.geometry import GeometrySpec
from au_face.nn.net import NetConfig

SIMREAL = SyntheticConfig(
    aus=(1, 4, 12, 25), coarse_source="mediapipe", image_size=160, frames_per_sequence=6,
    num_identities=(2, 1, 1), sequences_per_identity=1, held_fraction=0.5, crop_size=32,
)  # fmt: skip


@pytest.fixture(scope="module")
def simreal_root(tmp_path_factory: pytest.TempPathFactory, ict_npz: Path) -> Path:
    root = tmp_path_factory.mktemp("simreal")
    generate_synthetic_dataset(root, ict_npz, SIMREAL, workers=1)
    return root


def test_mediapipe_runs_on_the_renders_and_ground_truth_is_on_its_topology(simreal_root: Path, ict_npz: Path) -> None:
    simulator = SequenceSimulator(ict_npz, SIMREAL)
    seq = simulator.simulate("train", 0, 0)
    assert seq.coarse.topology == "mediapipe" and seq.coarse.vertices.shape == (6, 468, 3)
    assert int(seq.coarse.valid.sum()) >= 5, "MediaPipe finds the rendered face"
    assert seq.vertices.shape == (6, 468, 3) and seq.neutral.shape == (468, 3)
    valid = seq.coarse.valid.numpy()
    error = np.linalg.norm(seq.coarse.vertices.numpy()[valid] - seq.vertices[valid], axis=-1).mean()
    assert error < 1.0, f"the coarse mesh is a reconstruction of the ground truth (mean error {error:.2f} cm)"
    assert seq.coarse.crops.shape == (6, 32, 32, 3)


def test_renders_have_painted_features_and_camera_degradation(ict_npz: Path) -> None:
    face = ICTFaceModel.load(ict_npz).restrict(simreal.RENDER_REGION)
    rng = np.random.default_rng(0)
    appearance = simreal.Appearance.random(rng, np.array([0.8, 0.6, 0.5]))
    albedo = simreal.face_albedo(face.neutral, face.landmarks68, appearance)
    brow = face.landmarks68[19]
    lip = face.landmarks68[51]
    assert albedo[brow].sum() < 0.8 * appearance.skin.sum(), "brows are darker than skin"
    assert albedo[lip, 1] < albedo[lip, 0] * 0.9, "lips are redder than skin"
    image = np.full((64, 64, 3), 128, np.uint8)
    hit = np.ones((64, 64), bool)
    hit[20:30, 10:50] = False  # an opening
    landmarks = np.zeros((68, 2))
    landmarks[36:42] = [[12, 25], [20, 21], [28, 21], [36, 25], [28, 29], [20, 29]]
    landmarks[42:48] = landmarks[36:42] + [40, 0]  # eye width 64 px: iris radius about 5 px
    painted = simreal.paint_openings(image, hit, landmarks, appearance, light=1.0)
    assert (painted[25, 14] > 180).all(), "sclera inside the eye opening"
    assert painted[25, 24].sum() < painted[25, 14].sum(), "iris darker than sclera"
    assert (painted[hit] == 128).all(), "surface pixels are left alone"
    degraded = simreal.Degradation(1.0, 3.0, 50).apply(painted, np.random.default_rng(0))
    assert degraded.shape == painted.shape and not np.array_equal(degraded, painted)


def test_views_cover_the_configured_range() -> None:
    rng = np.random.default_rng(0)
    views = np.degrees(np.array([simreal.sample_view(rng, (35.0, 20.0, 15.0)) for _ in range(400)]))
    pitch, yaw, roll = views.T
    assert np.abs(yaw).max() <= 35.0 + 1e-9 and np.abs(yaw).max() > 25.0
    assert np.abs(pitch).max() <= 20.0 + 1e-9 and np.abs(roll).max() <= 15.0 + 1e-9


def test_datamodule_serves_neutral_references_single_frames_and_ground_truth_neutrals(
    simreal_root: Path, ict_npz: Path
) -> None:
    dm = SyntheticDataModule(
        root=str(simreal_root), ict_path=str(ict_npz), generator=SIMREAL, geometry=_geometry(ict_npz), reference="neutral", single_frames=0.5, clip_length=4, train_stride=2, use_crops=False,
    )  # fmt: skip
    assert dm.geometry.neutral is not None and dm.geometry.topology.name == "mediapipe"
    dm.setup("fit")
    train = dm.datasets["train"]
    clips = [train[i] for i in range(len(train))]
    singles = [c for c in clips if int(c["valid"].sum()) == 1 and not c["valid"][1:].any()]
    assert singles, "single-frame items are added"
    for item in clips:
        assert item["gt_reference"].shape == (468, 3) and item["gt_vertices"].shape == (4, 468, 3)
    one = singles[0]
    moved = one["vertices"][0] - one["reference"]
    assert float(moved.norm(dim=-1).mean()) < 0.5, "a lone frame's S̄ is fitted to that frame"
    on_ict = SyntheticDataModule(
        root=str(simreal_root), ict_path=str(ict_npz), generator=SIMREAL, geometry=_geometry(ict_npz, "ict")
    )
    with pytest.raises(Exception, match="mediapipe"):
        on_ict.records("train")


def test_held_sequences_hold_one_expression(simreal_root: Path) -> None:
    held = 0
    for path in sorted((simreal_root / "gt").glob("*.npz")):
        with np.load(path) as z:
            activations = z["activations"]
        held += bool(np.allclose(activations, activations[:1]))
    assert held >= 1


def test_model_refines_sim_to_real_clips_with_its_own_neutral_estimator(
    simreal_root: Path, ict_npz: Path, tmp_path: Path
) -> None:
    from au_face.coarse.base import CoarseFrames
    from au_face.training.task import AUFaceTask

    dm = SyntheticDataModule(root=str(simreal_root), ict_path=str(ict_npz), generator=SIMREAL, geometry=_geometry(ict_npz),
                             reference="neutral", clip_length=4, use_crops=False)  # fmt: skip
    net = NetConfig(modality="mesh", dim=16, token_hidden=16, heads=2, spatial_layers=1, temporal_layers=1)
    task = AUFaceTask(dm.geometry, net=net, clip_length=4, reference="neutral")
    coarse = CoarseFrames.load(dm.records("test")[0].coarse_path)
    reference = task.reference(coarse)
    assert torch.allclose(reference, dm.geometry.neutral.median_reference(coarse.vertices, coarse.valid))
    out = task.refine(coarse)
    assert out.vertices.shape == coarse.vertices.shape and torch.isfinite(out.au_probs[coarse.valid]).all()
    checkpoint = {
        "state_dict": task.state_dict(),
        "hyper_parameters": dict(task.hparams),
        "pytorch-lightning_version": "2.6.0",
    }
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "model.ckpt")
    restored = AUFaceTask.load_from_checkpoint(tmp_path / "model.ckpt")
    assert restored.geometry == task.geometry, "the geometry travels in the checkpoint"
    assert torch.allclose(restored.reference(coarse), reference), "so does the neutral estimator"


def test_a_video_model_on_data_without_crops_is_a_clear_error(simreal_root: Path, ict_npz: Path) -> None:
    from types import SimpleNamespace

    from au_face.errors import AUFaceError
    from au_face.training.task import AUFaceTask

    dm = SyntheticDataModule(root=str(simreal_root), ict_path=str(ict_npz), generator=SIMREAL, geometry=_geometry(ict_npz),
                             clip_length=4, use_crops=False)  # fmt: skip
    net = NetConfig(modality="video", dim=16, heads=2, spatial_layers=1, temporal_layers=1)
    task = AUFaceTask(dm.geometry, net=net, clip_length=4)
    task._trainer = SimpleNamespace(datamodule=dm, ckpt_path=None)
    with pytest.raises(AUFaceError, match="use_crops=true"):
        task.setup("fit")


def _geometry(ict_npz: Path, topology: str = "mediapipe") -> GeometrySpec:
    return GeometrySpec(topology=topology, aus=[1, 4, 12, 25], ict_path=str(ict_npz))
