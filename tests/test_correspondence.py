"""ICT -> MediaPipe TopologyMap and synthetic data served on the MediaPipe topology (datamodule, CLI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from au_face.cli import main
from au_face.data.clips import SequenceRecord, load_sequence
from au_face.data.datamodules.synthetic import SyntheticDataModule
from au_face.data.synthetic.config import SyntheticConfig
from au_face.data.synthetic.generate import generate_synthetic_dataset
from au_face.errors import AUFaceError
from au_face.faces.correspondence import TopologyMap, interocular_distance
from au_face.faces.topology import FaceTopology, TopologyError
from au_face.geometry import FaceGeometry, GeometrySpec
from dataset_fixtures import face_geometry

REPO = Path(__file__).resolve().parents[1]
TINY = SyntheticConfig(num_identities=(2, 1, 1), sequences_per_identity=1, frames_per_sequence=20, image_size=32)


@pytest.fixture(scope="module")
def mediapipe() -> FaceTopology:
    pytest.importorskip("mediapipe")
    from au_face.faces.mediapipe import mediapipe_topology

    return mediapipe_topology()


@pytest.fixture(scope="module")
def ict_to_mp(ict_model, mediapipe) -> TopologyMap:
    return TopologyMap.between(ict_model.topology(), mediapipe)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory, ict_npz: Path) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_dataset(root, ict_npz, TINY, workers=1)
    return root


def _carried_template(ict_model, ict_to_mp: TopologyMap) -> np.ndarray:
    return ict_to_mp.apply(ict_model.topology().template)


def test_landmarks_land_on_the_mediapipe_landmarks(ict_model, mediapipe, ict_to_mp) -> None:
    unit = interocular_distance(mediapipe)  # outer eye corners, 9 cm on the MediaPipe template
    carried = _carried_template(ict_model, ict_to_mp)
    error = np.linalg.norm(carried[mediapipe.landmarks68] - mediapipe.template[mediapipe.landmarks68], axis=1) / unit
    assert error.mean() < 0.08 and error.max() < 0.2, (error.mean(), error.max())
    # the whole face, not only the landmarks, lands on the template (identities differ, so not exactly)
    assert (np.linalg.norm(carried - mediapipe.template, axis=1) / unit).max() < 0.2
    # every MediaPipe vertex has an ICT vertex close by after the non-rigid registration
    assert ict_to_mp.distances.max() < 0.1 * unit
    # both topologies are y up, z to the viewer, about cm: a small rotation and a scale near 1
    angle = np.degrees(np.arccos(np.clip((np.trace(ict_to_mp.rotation) - 1) / 2, -1, 1)))
    assert angle < 5.0 and 0.85 < ict_to_mp.scale < 1.1


def test_apply_shapes_types_and_errors(ict_model, ict_to_mp) -> None:
    sequence = np.stack(
        [ict_model.shape(expression=np.full(len(ict_model.expression_names), w)) for w in (0, 0.3, 0.6)]
    )
    carried = ict_to_mp.apply(sequence)
    assert carried.shape == (3, 468, 3) and carried.dtype == np.float32
    assert np.allclose(ict_to_mp(sequence[1]), carried[1], atol=1e-5)
    assert ict_to_mp.num_destination_vertices == 468 and ict_to_mp.num_source_vertices == ict_model.num_vertices
    with pytest.raises(TopologyError, match="6706"):
        ict_to_mp.apply(np.zeros((3, 468, 3)))
    with pytest.raises(TopologyError, match="basis"):
        ict_to_mp.apply_basis(np.zeros((ict_model.num_vertices, 3)))


def test_expression_displacements_carry_consistently_with_the_basis(ict_model, ict_to_mp) -> None:
    rng = np.random.default_rng(0)
    basis = ict_model.expression_deltas.astype(np.float64)
    carried_basis = ict_to_mp.apply_basis(basis)
    assert carried_basis.shape == (len(basis), 468, 3)
    neutral = ict_model.topology().template.astype(np.float64)
    for _ in range(3):
        psi = rng.uniform(0, 1, len(basis))
        moved = ict_to_mp.apply(neutral + np.einsum("e,evc->vc", psi, basis))
        predicted = ict_to_mp.apply(neutral) + np.einsum("e,evc->vc", psi, carried_basis)
        assert np.allclose(moved, predicted, atol=1e-9)
    # a displacement is rotated and scaled, never translated
    assert np.allclose(ict_to_mp.apply_basis(np.zeros_like(basis[:1])), 0.0)


def test_expressions_move_the_right_mediapipe_vertices(ict_model, ict_to_mp) -> None:
    """The matches respect the face's parts: jawOpen parts the lips, eyeBlink_L closes only the left eye."""
    neutral = ict_model.topology().template

    def carried(shape: str) -> np.ndarray:
        return ict_to_mp.apply(neutral + ict_model.expression_deltas[ict_model.expression_index(shape)])

    def gap(vertices: np.ndarray, a: int, b: int) -> float:
        return float(np.linalg.norm(vertices[a] - vertices[b]))

    rest = ict_to_mp.apply(neutral)
    assert gap(rest, 13, 14) < 0.2 and gap(carried("jawOpen"), 13, 14) > 2.0  # inner lip midpoints
    blink = carried("eyeBlink_L")
    assert gap(blink, 386, 374) < 0.5 * gap(rest, 386, 374)  # subject's left eye (x > 0) closes
    assert gap(blink, 159, 145) == pytest.approx(gap(rest, 159, 145), abs=1e-3)  # right eye stays open


def test_deterministic(ict_model, mediapipe, ict_to_mp) -> None:
    again = TopologyMap.between(ict_model.topology(), mediapipe)
    assert np.array_equal(again.indices, ict_to_mp.indices) and again.scale == ict_to_mp.scale


def test_load_sequence_applies_the_vertex_map(tiny_root: Path, ict_to_mp) -> None:
    seq = "train_id000_s00"
    plain = SequenceRecord(seq, "id000", tiny_root / "coarse" / f"{seq}.npz", gt_path=tiny_root / "gt" / f"{seq}.npz")
    mapped = SequenceRecord(plain.name, plain.subject, plain.coarse_path, gt_path=plain.gt_path, vertex_map=ict_to_mp)
    a, b = load_sequence(plain), load_sequence(mapped)
    assert b.vertices.shape == (TINY.frames_per_sequence, 468, 3) and b.vertices.dtype == torch.float32
    assert torch.allclose(b.vertices, torch.from_numpy(ict_to_mp.apply(a.vertices.numpy())), atol=1e-5)
    assert torch.allclose(b.gt_vertices, torch.from_numpy(ict_to_mp.apply(a.gt_vertices.numpy())), atol=1e-5)
    assert torch.allclose(b.reference, b.vertices.mean(0), atol=1e-4)  # S̄ of the carried meshes


def test_datamodule_serves_mediapipe_meshes(tiny_root: Path, ict_npz: Path) -> None:
    geometry = GeometrySpec(topology="mediapipe", aus="bp4d", ict_path=str(ict_npz))
    dm = SyntheticDataModule(
        root=str(tiny_root), ict_path=str(ict_npz), generator=TINY, geometry=geometry, batch_size=2, use_crops=False
    )
    geometry = dm.geometry
    assert geometry.topology.name == "mediapipe" and geometry.num_vertices == 468
    assert geometry.masks.shape == (12, 468) and geometry.basis.shape[1:] == (468, 3)
    assert (geometry.masks.max(axis=1) == 1.0).all(), "every transferred AU mask keeps an active region"
    assert geometry.vertex_scale == pytest.approx(0.9)  # a tenth of the MediaPipe template's 9 cm eye corners
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["vertices"].shape == (2, 16, 468, 3) and batch["gt_vertices"].shape == (2, 16, 468, 3)
    assert batch["reference"].shape == (2, 468, 3) and "crops" not in batch
    mp = face_geometry([12])
    other = FaceTopology("flame", mp.topology.template, mp.topology.triangles, mp.topology.landmarks68)
    flame = SyntheticDataModule(
        root=str(tiny_root),
        ict_path=str(ict_npz),
        generator=TINY,
        geometry=FaceGeometry(other, mp.aus, mp.masks, mp.basis),
    )
    with pytest.raises(AUFaceError, match="flame"):
        flame.records("train")


def test_fit_fast_dev_run_with_the_mediapipe_config(tiny_root: Path, tmp_path: Path, ict_npz: Path) -> None:
    run = tmp_path / "run"
    index_written = (tiny_root / "synthetic.json").stat().st_mtime_ns
    generator = [f"--data.init_args.generator.{k}={v}" for k, v in
                 (("num_identities", "[2, 1, 1]"), ("sequences_per_identity", 1), ("frames_per_sequence", 20), ("image_size", 32))]  # fmt: skip
    code = main([
        "fit", "--config", str(REPO / "configs" / "synthetic.yaml"), f"--run_dir={run}",
        "--geometry.topology=mediapipe", f"--geometry.ict_path={ict_npz}", "--model.init_args.net.modality=mesh",
        f"--data.init_args.root={tiny_root}", f"--data.init_args.ict_path={ict_npz}", "--data.init_args.batch_size=2",
        "--data.init_args.use_crops=false", *generator, "--model.init_args.net.dim=32", "--model.init_args.net.token_hidden=32",
        "--trainer.enable_progress_bar=false", "--trainer.fast_dev_run=true",
    ])  # fmt: skip
    assert code == 0
    assert (tiny_root / "synthetic.json").stat().st_mtime_ns == index_written, "the tiny set was regenerated"
