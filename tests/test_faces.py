"""AU catalogue, FaceTopology and the ICT-FaceKit model (npz and the original OBJ folder)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from au_face.aus import AU_SETS, UnknownAUError, parse_au, resolve_aus
from au_face.faces.ict import ICTAssetError, ICTFaceModel, ict_blendshape_weights
from au_face.faces.topology import FaceTopology, TopologyError
from au_face.utils.assets import ICT_MODEL, MissingAssetError


@pytest.mark.parametrize(
    ("text", "number"), [("AU12", 12), ("12", 12), ("AU06", 6), ("au 6", 6), (" AU1 ", 1), (25, 25)]
)
def test_parse_au_forms(text: str | int, number: int) -> None:
    assert parse_au(text) == number


@pytest.mark.parametrize("bad", ["AU99", "smile", "", "AU-1", True])
def test_unknown_au_names_are_clear_errors(bad) -> None:
    with pytest.raises(UnknownAUError):
        parse_au(bad)


def test_benchmark_au_sets() -> None:
    assert resolve_aus("BP4D") == [1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24]
    assert resolve_aus("disfa") == [1, 2, 4, 6, 9, 12, 25, 26]
    assert resolve_aus("Aff-Wild2") == list(AU_SETS["affwild2"])
    assert resolve_aus("AU1, AU02 12") == [1, 2, 12]
    with pytest.raises(UnknownAUError, match="repeats"):
        resolve_aus(["AU12", "12"])


def test_topology_checks_and_round_trip(tmp_path: Path) -> None:
    template = np.random.default_rng(0).normal(size=(70, 3))
    triangles = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    topo = FaceTopology("toy", template, triangles, np.arange(68))
    assert topo.edges().tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3], [2, 4], [3, 4]]
    topo.save(tmp_path / "toy.npz")
    back = FaceTopology.load(tmp_path / "toy.npz")
    assert back.name == "toy" and np.array_equal(back.triangles, topo.triangles)
    with pytest.raises(TopologyError, match=r"\[\.\.\., 70, 3\]"):
        topo.check_vertices(np.zeros((5, 69, 3)))
    with pytest.raises(TopologyError, match="triangle ids"):
        FaceTopology("bad", template, np.array([[0, 1, 70]]), np.arange(68))


def test_ict_npz_narrow_region(ict_model: ICTFaceModel) -> None:
    assert ict_model.num_vertices == 6706
    topo = ict_model.topology()
    assert topo.landmarks68.max() < 6706
    smile = ict_model.shape(expression=ict_model.au_weights(12))
    moved = np.linalg.norm(smile - ict_model.neutral, axis=1)
    corners = topo.landmarks68[[48, 54]]
    assert moved[corners].min() > 5 * np.median(moved), "AU12 must move the lip corners most"


def test_facs_table_and_extension() -> None:
    assert ict_blendshape_weights("AU12") == {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0}
    assert set(ict_blendshape_weights(26)) == {"jawOpen"}
    with pytest.raises(KeyError, match="AU43"):
        ict_blendshape_weights(43)


def test_original_obj_folder_matches_the_npz(shared_data: Path, ict_npz: Path) -> None:
    folder = shared_data / "ict-facekit" / "FaceXModel-sample"
    npz = ICTFaceModel.from_npz(ict_npz)
    obj = ICTFaceModel.from_folder(folder, expressions=["browInnerUp_L", "jawOpen", "mouthSmile_L"])
    assert np.allclose(obj.neutral, npz.neutral)
    assert np.array_equal(obj.triangles, npz.triangles), "quads must split as in the converted model"
    assert np.array_equal(obj.landmarks68, npz.landmarks68)
    for name in obj.expression_names:
        assert np.allclose(
            obj.expression_deltas[obj.expression_index(name)],
            npz.expression_deltas[npz.expression_index(name)],
            atol=1e-4,
        )
    assert np.allclose(obj.identity_deltas[0], npz.identity_deltas[0], atol=1e-4)


def test_missing_ict_files_are_clear_errors(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ICTAssetError, match="ICT-FaceKit npz not found"):
        ICTFaceModel.from_npz(tmp_path / "nothing.npz")
    folder = tmp_path / "FaceXModel"
    shutil.copytree(shared_data / "ict-facekit" / "FaceXModel-sample", folder)
    with pytest.raises(ICTAssetError, match="missing shape file browDown_L.obj"):
        ICTFaceModel.from_folder(folder)
    (folder / "generic_neutral_mesh.obj").unlink()
    with pytest.raises(ICTAssetError, match="generic_neutral_mesh.obj"):
        ICTFaceModel.from_folder(folder)
    not_npz = tmp_path / "model.npz"
    not_npz.write_text("hello")
    with pytest.raises(ICTAssetError, match="not a readable npz"):
        ICTFaceModel.from_npz(not_npz)
    monkeypatch.delenv("AU_FACE_ICT", raising=False)
    with pytest.raises(MissingAssetError, match="AU_FACE_ICT.*ICT-FaceKit"):
        ICT_MODEL.resolve(None)
