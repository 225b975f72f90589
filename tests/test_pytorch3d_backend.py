"""Renderer backends: an explicit choice, a clear error without PyTorch3D, separate caches, and
agreement of the ``pytorch3d`` backend with the default ``embree`` one where PyTorch3D loads."""

from __future__ import annotations

import dataclasses
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from au_face.coarse.base import CoarseFrames
from au_face.data.synthetic.config import INDEX_NAME, SyntheticConfig, SyntheticConfigError, config_fingerprint
from au_face.data.synthetic.generate import generate_synthetic_dataset, load_synthetic_index
from au_face.data.synthetic.motion import sample_head_pose
from au_face.data.synthetic.rasterizers import (
    PYTORCH3D_PINS,
    RendererBackendError,
    pytorch3d_import_error,
    renderer_name,
)
from au_face.data.synthetic.shading import Lighting, MeshRenderer, gradient_background

REPO = Path(__file__).resolve().parents[1]
TINY = SyntheticConfig(num_identities=(1, 1, 1), sequences_per_identity=1, frames_per_sequence=4, image_size=32)
TINY_P3D = dataclasses.replace(TINY, render_backend="pytorch3d")

#: Agreement bounds of the two backends on the same mesh: coverage-mask IoU, and mean absolute
#: difference (grey levels of 255) where both cover. Shading is shared, so only the triangle chosen
#: at a pixel centre lying on an edge can differ.
MIN_MASK_IOU = 0.995
MAX_MEAN_SHADING_DIFF = 0.5

_PYTORCH3D_ERROR = pytorch3d_import_error()
needs_pytorch3d = pytest.mark.skipif(
    _PYTORCH3D_ERROR is not None,
    reason=f"PyTorch3D's compiled part does not load here ({_PYTORCH3D_ERROR}); "
    "its environment is constraints/pytorch3d.txt, see docs/pytorch3d.md",
)


@pytest.fixture
def without_pytorch3d(monkeypatch: pytest.MonkeyPatch) -> None:
    """``from pytorch3d import _C`` fails, as in an environment without PyTorch3D."""
    monkeypatch.setitem(sys.modules, "pytorch3d", None)


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(SyntheticConfigError, match="render_backend must be one of"):
        SyntheticConfig(render_backend="opengl")
    with pytest.raises(RendererBackendError, match="unknown renderer backend 'opengl'"):
        MeshRenderer(np.array([[0, 1, 2]]), 16, backend="opengl")


def test_pytorch3d_without_its_environment_is_a_clear_error(without_pytorch3d, tmp_path: Path, ict_npz: Path) -> None:
    with pytest.raises(RendererBackendError, match=r"torch==2\.12\.1") as err:
        MeshRenderer(np.array([[0, 1, 2]]), 16, backend="pytorch3d")
    message = str(err.value)
    assert "from pytorch3d import _C" in message
    assert '-c constraints/pytorch3d.txt -e ".[pytorch3d-render]"' in message
    assert all(f'"{pin}"' in message for pin in PYTORCH3D_PINS)
    assert MeshRenderer(np.array([[0, 1, 2]]), 16).backend == "embree"  # the default needs none of it

    root = tmp_path / "data"
    with pytest.raises(RendererBackendError, match="pytorch3d"):
        generate_synthetic_dataset(root, ict_npz, TINY_P3D)
    assert not root.exists()  # nothing written


def test_backend_is_part_of_the_cache_key(without_pytorch3d, tmp_path: Path, ict_npz: Path) -> None:
    assert config_fingerprint(TINY) != config_fingerprint(TINY_P3D)
    index = generate_synthetic_dataset(tmp_path, ict_npz, TINY)
    assert index.renderer == renderer_name("embree") and index.config.render_backend == "embree"
    assert load_synthetic_index(tmp_path, TINY) is not None
    # embree data is not pytorch3d data: it is regenerated, which needs PyTorch3D here
    assert load_synthetic_index(tmp_path, TINY_P3D) is None
    with pytest.raises(RendererBackendError):
        generate_synthetic_dataset(tmp_path, ict_npz, TINY_P3D)

    stored = json.loads((tmp_path / INDEX_NAME).read_text())
    # an index claiming pytorch3d is never taken for embree data
    p3d = {**stored, "renderer": "pytorch3d", "config": {**stored["config"], "render_backend": "pytorch3d"}}
    (tmp_path / INDEX_NAME).write_text(json.dumps(p3d))
    assert load_synthetic_index(tmp_path, TINY) is None
    # an index written before render_backend existed is embree data, still reused
    del stored["config"]["render_backend"]
    (tmp_path / INDEX_NAME).write_text(json.dumps(stored))
    assert load_synthetic_index(tmp_path, TINY) is not None


def test_pytorch3d_pins_agree() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    constraints = (REPO / "constraints" / "pytorch3d.txt").read_text().splitlines()
    pins = tuple(line for line in constraints if line and not line.startswith("#"))
    assert tuple(extras["pytorch3d-render"]) == pins == PYTORCH3D_PINS
    assert not any("pytorch3d" in dep for dep in extras["all"])  # CI's torch is not 2.12.1


def _masks_and_shading(first, second) -> tuple[float, float]:
    """Coverage IoU and mean absolute image difference where both frames cover."""
    both = first.mask & second.mask
    iou = both.sum() / (first.mask | second.mask).sum()
    diff = np.abs(first.image.astype(float) - second.image.astype(float))[both]
    return float(iou), float(diff.mean())


@needs_pytorch3d
def test_backends_agree_on_large_overlapping_triangles() -> None:
    size = 50  # not a multiple of the pytorch3d backend's tiles; triangles span several tiles
    rng = np.random.default_rng(1)
    triangles = np.arange(30).reshape(10, 3)
    renderers = [MeshRenderer(triangles, size, backend) for backend in ("embree", "pytorch3d")]
    background = gradient_background(size, (0.2, 0.3, 0.9), (0.1, 0.6, 0.2))
    lighting = Lighting(
        np.array([0.3, -0.2, -1.0]) / np.sqrt(1.13), ambient=0.3, intensity=1.0, albedo=np.array([0.8, 0.6, 0.5])
    )
    for _ in range(3):
        vertices = np.concatenate([rng.uniform(-10, size + 10, size=(30, 2)), rng.uniform(-5, 5, size=(30, 1))], axis=1)
        a, b = (r.render(vertices, lighting, background) for r in renderers)
        iou, shading = _masks_and_shading(a, b)
        assert iou >= MIN_MASK_IOU and shading <= MAX_MEAN_SHADING_DIFF, (iou, shading)


@needs_pytorch3d
def test_backends_agree(ict_model) -> None:
    size = 100
    config = SyntheticConfig(image_size=size, head_rotation_deg=30)
    rotation, translation, scale = sample_head_pose(
        ict_model.neutral[ict_model.landmarks68], np.random.default_rng(3), config
    )
    rng = np.random.default_rng(0)
    albedo = rng.uniform(0.2, 0.9, size=(len(ict_model.neutral), 3))
    background = gradient_background(size, (0.2, 0.3, 0.9), (0.1, 0.6, 0.2))
    embree = MeshRenderer(ict_model.triangles, size)
    pytorch3d = MeshRenderer(ict_model.triangles, size, backend="pytorch3d")
    assert pytorch3d.name == "pytorch3d" != embree.name
    shift = np.array([0.0, 0.0, 0.0])
    for t in (0, 20, 40):  # yaw up to 30°: the nose hides part of a cheek
        posed = scale[t] * ict_model.neutral @ rotation[t].T + translation[t] + shift
        shift = shift + [0.3 * size, 0.1 * size, 0.0]  # then partly out of the frame
        lighting = Lighting.random(rng)
        cavities = [posed[ict_model.landmarks68[36:42], :2]]
        for vertex_albedo in (None, albedo):
            args = (posed, lighting, background, cavities, (0.12, 0.05, 0.05), vertex_albedo)
            a, b = embree.render(*args), pytorch3d.render(*args)
            assert 0.2 < a.mask.mean() < 0.9
            iou, shading = _masks_and_shading(a, b)
            assert iou >= MIN_MASK_IOU and shading <= MAX_MEAN_SHADING_DIFF, (t, iou, shading)


@needs_pytorch3d
def test_synthetic_data_from_pytorch3d(tmp_path: Path, ict_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    embree = generate_synthetic_dataset(tmp_path / "embree", ict_npz, TINY)
    pytorch3d = generate_synthetic_dataset(tmp_path / "pytorch3d", ict_npz, TINY_P3D)
    assert pytorch3d.renderer == "pytorch3d" and pytorch3d.config.render_backend == "pytorch3d"
    assert load_synthetic_index(tmp_path / "pytorch3d", TINY) is None
    assert pytorch3d.splits == embree.splits
    for seq_id in embree.splits["train"] + embree.splits["test"]:
        a = CoarseFrames.load(embree.coarse_path(seq_id)).crops.numpy().astype(float)
        b = CoarseFrames.load(pytorch3d.coarse_path(seq_id)).crops.numpy().astype(float)
        assert np.abs(a - b).mean() <= MAX_MEAN_SHADING_DIFF
    monkeypatch.setitem(sys.modules, "pytorch3d", None)  # loading the data needs no PyTorch3D
    assert load_synthetic_index(tmp_path / "pytorch3d", TINY_P3D) is not None
