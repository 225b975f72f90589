"""The brow appearance descriptor and the appearance head that adds per-AU offsets to the mesh model's logits.

Synthetic images (smoothed noise) and synthetic 468-point arrays stand in for MediaPipe: nothing here
runs a face tracker.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from au_face.coarse.base import CoarseFrames, CoarseFramesError
from au_face.data.appearance import with_appearance
from au_face.errors import AppearanceMissingWarning
from au_face.evaluation.calibration import choose_offsets
from au_face.faces.appearance import (
    BROW,
    DESCRIPTOR_SIZE,
    EYE_DISTANCE,
    EYE_MARGIN,
    EYELID_TOP,
    LEFT_EYE,
    MAX_OUTSIDE,
    MIN_EYE_DISTANCE,
    MOUTH,
    PATCH_SIZE,
    REGIONS,
    RIGHT_EYE,
    appearance_descriptor,
    au_columns,
    eye_distance,
    face_patch,
    outside_share,
    patch_transform,
    region_of,
    region_part,
)
from au_face.inference.pipeline import only_inputs
from au_face.io.checkpoints import export_checkpoint
from au_face.model.numpy_refiner import NumpyRefiner, load_array_refiner
from au_face.model.refiner import AUFaceRefiner
from au_face.nn.appearance import AppearanceHead
from au_face.nn.net import NetConfig
from checkpoint_fixtures import noisy_meshes, save_refiner
from dataset_fixtures import face_geometry

#: Where the patch puts the subject's right and left eye centres (x, y in patch pixels).
RIGHT_IN_PATCH = (PATCH_SIZE[0] / 2 - EYE_DISTANCE / 2, PATCH_SIZE[1] - EYE_MARGIN)
LEFT_IN_PATCH = (PATCH_SIZE[0] / 2 + EYE_DISTANCE / 2, PATCH_SIZE[1] - EYE_MARGIN)


def brow_descriptor(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The brow part of the descriptor."""
    return appearance_descriptor(image, points)[region_part(BROW)]


def brow_patch(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    return face_patch(image, points, BROW)


# -- synthetic faces ---------------------------------------------------------------------------
def _image(seed: int, shape: tuple[int, int] = (240, 320)) -> np.ndarray:
    """Smooth grey texture ``[H,W]`` uint8 with structure at a few pixels' scale (gradients for the HOG)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((shape[0] // 8, shape[1] // 8))
    image = cv2.GaussianBlur(cv2.resize(noise, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC), (0, 0), 2)
    return ((image - image.min()) / np.ptp(image) * 255).astype(np.uint8)


def _points(right=(130.0, 140.0), left=(190.0, 140.0), seed: int = 0) -> np.ndarray:
    """468 points ``[468,2]`` in pixels: random except the eyes, rings whose centres are ``right`` and ``left``."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(50, 200, (468, 2))
    angles = np.linspace(0, 2 * np.pi, len(RIGHT_EYE), endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1) * [8.0, 4.0]  # mean exactly zero
    points[list(RIGHT_EYE)] = np.asarray(right) + ring
    points[list(LEFT_EYE)] = np.asarray(left) + ring
    return points


def _similarity(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    matrix = cv2.getRotationMatrix2D((160.0, 120.0), angle, scale)
    matrix[:, 2] += shift
    return matrix


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- the descriptor ----------------------------------------------------------------------------
def test_the_descriptor_is_a_finite_float32_vector_of_the_documented_size() -> None:
    descriptor = appearance_descriptor(_image(0), _points())
    assert descriptor.shape == (DESCRIPTOR_SIZE,) == (3780 + 3276,)
    assert (region_part(BROW), region_part(MOUTH)) == (slice(0, 3780), slice(3780, 7056)), "the brow part first"
    assert descriptor.dtype == np.float32
    assert np.isfinite(descriptor).all() and descriptor.min() >= 0 and descriptor.max() > 0
    for region in REGIONS:
        patch = face_patch(_image(0), _points(), region)
        assert patch.shape == (region.size[1], region.size[0]) and patch.dtype == np.uint8
        assert patch.min() < 20 and patch.max() > 235, "the patch is histogram-equalised"
    assert BROW.size == PATCH_SIZE
    assert [region_of(au) for au in (1, 4, 6, 12, 15, 25)] == [BROW, BROW, MOUTH, MOUTH, MOUTH, None]


def test_the_eyelid_aus_read_only_the_brow_patchs_eye_rows() -> None:
    brow = region_part(BROW)
    assert region_of(5) == region_of(7) == BROW
    assert au_columns(1).tolist() == list(range(brow.start, brow.stop))
    lids = au_columns(5)
    assert au_columns(7).tolist() == lids.tolist() and au_columns(25).size == 0
    assert brow.start <= lids.min() and lids.max() < brow.stop and len(lids) == len(set(lids.tolist()))
    assert len(lids) == 15 * 2 * 36, "two of the seven rows of 15 HOG blocks (36 values each)"
    hog = cv2.HOGDescriptor(BROW.size, (16, 16), (8, 8), (8, 8), 9)
    stripes = np.tile((np.arange(BROW.size[0]) * 37 % 256).astype(np.uint8), (BROW.size[1], 1))
    above, on_the_eyes = stripes.copy(), stripes.copy()
    above[EYELID_TOP - 2 :] = 0  # edges on the brows only
    on_the_eyes[:EYELID_TOP] = 0
    brow_only = np.asarray(hog.compute(above)).reshape(-1)
    assert brow_only[lids - brow.start].max() == 0 and brow_only.max() > 0
    assert np.asarray(hog.compute(on_the_eyes)).reshape(-1)[lids - brow.start].max() > 0


@pytest.mark.parametrize(("angle", "scale", "shift"), [(10.0, 1.3, (60.0, 40.0)), (-15.0, 0.8, (-20.0, 30.0))])
def test_the_descriptor_does_not_change_with_a_similarity_of_image_and_points(angle, scale, shift) -> None:
    image, points = _image(0), _points()
    matrix = _similarity(angle, scale, shift)
    moved = cv2.warpAffine(image, matrix, (440, 360), flags=cv2.INTER_LINEAR)
    descriptor = brow_descriptor(image, points)
    same = _cosine(descriptor, brow_descriptor(moved, _apply(matrix, points)))
    misaligned = _cosine(descriptor, brow_descriptor(moved, points))  # the points not moved with the image
    others = [_cosine(descriptor, brow_descriptor(_image(seed), points)) for seed in (1, 2, 3)]
    assert same > 0.95
    assert max(others) < 0.8 and same - max(others) > 0.15
    assert misaligned < same - 0.15


def test_the_eye_centres_land_at_the_documented_places_in_the_patch() -> None:
    points = _points()
    for matrix in (np.eye(2, 3), _similarity(10.0, 1.3, (60.0, 40.0)), _similarity(-25.0, 0.6, (5.0, -10.0))):
        moved = _apply(matrix, points)
        transform = patch_transform(moved)
        right, left = moved[list(RIGHT_EYE)].mean(0), moved[list(LEFT_EYE)].mean(0)
        np.testing.assert_allclose(transform @ np.append(right, 1.0), RIGHT_IN_PATCH, atol=1e-9)
        np.testing.assert_allclose(transform @ np.append(left, 1.0), LEFT_IN_PATCH, atol=1e-9)
        # the brows, above the eyes (perpendicular to the eye line, towards the top of an upright face), are
        # above them in the patch: no mirror, no turn by 180°
        axis = (left - right) / np.linalg.norm(left - right)
        above = (right + left) / 2 + 20.0 * np.array([axis[1], -axis[0]])
        x, y = transform @ np.append(above, 1.0)
        zoom = EYE_DISTANCE / np.linalg.norm(left - right)
        assert x == pytest.approx(PATCH_SIZE[0] / 2) and y == pytest.approx(RIGHT_IN_PATCH[1] - 20.0 * zoom)


def test_the_patch_is_cut_from_the_image_in_the_direction_of_the_transform() -> None:
    """A bright spot on the right eye's centre is the brightest pixel of the patch at the right eye's place."""
    image = np.full((240, 320), 60, dtype=np.uint8)
    image[:, ::9] = 90  # some texture for the equalisation
    points = _points(right=(120.0, 150.0), left=(185.0, 132.0))
    centre = points[list(RIGHT_EYE)].mean(0)
    cv2.circle(image, (round(centre[0]), round(centre[1])), 3, 255, -1)
    patch = brow_patch(image, points)
    y, x = np.unravel_index(np.argmax(patch), patch.shape)
    assert abs(x - RIGHT_IN_PATCH[0]) <= 3 and abs(y - RIGHT_IN_PATCH[1]) <= 3


def test_the_mouth_patch_lies_below_the_eyes_at_its_documented_place() -> None:
    """A bright spot 40 px (patch scale) below the eyes' midpoint, perpendicular to the eye line, is the
    brightest pixel of the mouth patch at (width / 2, 40 + MOUTH.eyes[1])."""
    image = np.full((320, 320), 60, dtype=np.uint8)
    image[:, ::9] = 90
    points = _points(right=(120.0, 110.0), left=(185.0, 98.0))
    right, left = points[list(RIGHT_EYE)].mean(0), points[list(LEFT_EYE)].mean(0)
    axis = (left - right) / np.linalg.norm(left - right)
    below = (right + left) / 2 + 40.0 / EYE_DISTANCE * np.linalg.norm(left - right) * np.array([-axis[1], axis[0]])
    cv2.circle(image, (round(below[0]), round(below[1])), 3, 255, -1)
    patch = face_patch(image, points, MOUTH)
    y, x = np.unravel_index(np.argmax(patch), patch.shape)
    assert abs(x - MOUTH.size[0] / 2) <= 3 and abs(y - (40.0 + MOUTH.eyes[1])) <= 3


def test_a_part_whose_patch_leaves_the_image_is_absent_alone() -> None:
    """A tight crop cut below the mouth: the brow part stays, the mouth part is NaN."""
    image = _image(0, (150, 320))
    points = _points(right=(130.0, 100.0), left=(190.0, 100.0))  # the mouth patch reaches 90 px below the eyes
    assert outside_share(image.shape, points, MOUTH) > MAX_OUTSIDE >= outside_share(image.shape, points, BROW)
    descriptor = appearance_descriptor(image, points)
    assert np.isfinite(descriptor[region_part(BROW)]).all() and np.isnan(descriptor[region_part(MOUTH)]).all()


@pytest.mark.parametrize(
    "points",
    [
        np.zeros((467, 2)),  # too few points
        np.zeros(468 * 2),  # flat
        np.zeros((468, 1)),  # no y
    ],
)
def test_malformed_points_raise_value_error(points: np.ndarray) -> None:
    with pytest.raises(ValueError, match="468"):
        patch_transform(points)
    with pytest.raises(ValueError):
        brow_descriptor(_image(0), points)


def test_coincident_or_undefined_eyes_raise_value_error() -> None:
    same = _points(right=(150.0, 140.0), left=(150.0, 140.0))
    with pytest.raises(ValueError, match="coincide"):
        patch_transform(same)
    with pytest.raises(ValueError):
        brow_descriptor(_image(0), np.zeros((468, 3)))  # a frame without a face: all points at 0
    for bad in (np.nan, np.inf):
        points = _points()
        points[LEFT_EYE[0]] = bad
        with pytest.raises(ValueError, match="not finite"):
            patch_transform(points)


def test_a_large_face_reads_as_the_same_face_seen_smaller() -> None:
    """A face larger than the patch's scale is area-averaged down first, as a camera further away sees it:
    a fine texture does not alias (a direct warp of a 2.5-times larger face: cosine 0.98 here)."""
    rng = np.random.default_rng(3)
    noise = rng.random((200, 266))
    fine = cv2.GaussianBlur(cv2.resize(noise, (800, 600), interpolation=cv2.INTER_CUBIC), (0, 0), 1.0)
    image = ((fine - fine.min()) / np.ptp(fine) * 255).astype(np.uint8)
    points = _points(right=(340.0, 360.0), left=(460.0, 360.0))
    assert eye_distance(points) == pytest.approx(120.0)
    small = cv2.resize(image, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
    assert _cosine(brow_descriptor(image, points), brow_descriptor(small, points * 0.4)) > 0.99


def test_a_small_face_or_one_at_the_edge_has_no_descriptor() -> None:
    image = _image(0)
    gap = MIN_EYE_DISTANCE
    small = _points(right=(160.0 - gap / 2 + 0.5, 140.0), left=(160.0 + gap / 2 - 0.5, 140.0))
    assert eye_distance(small) < MIN_EYE_DISTANCE and np.isnan(brow_descriptor(image, small)).all()
    enough = _points(right=(160.0 - gap / 2 - 0.5, 140.0), left=(160.0 + gap / 2 + 0.5, 140.0))
    assert np.isfinite(brow_descriptor(image, enough)).all()
    # eyes 60 px apart: the patch reaches 50 / 48 * 60 = 62.5 px above them
    assert outside_share(image.shape, _points()) == 0.0
    top = _points(right=(130.0, 40.0), left=(190.0, 40.0))  # 22.5 px of the patch's 80 above the image
    assert outside_share(image.shape, top) == pytest.approx(22.5 / 80, abs=0.02)
    assert outside_share(image.shape, top) > MAX_OUTSIDE and np.isnan(brow_descriptor(image, top)).all()
    near = _points(right=(130.0, 52.0), left=(190.0, 52.0))  # 10.5 px above: kept
    assert outside_share(image.shape, near) < MAX_OUTSIDE and np.isfinite(brow_descriptor(image, near)).all()


def test_an_image_that_is_not_uint8_is_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        brow_descriptor(_image(0).astype(np.float32) / 255, _points())


def test_grey_and_rgb_images_both_work() -> None:
    grey, points = _image(0), _points()
    rgb = np.repeat(grey[..., None], 3, axis=2)
    np.testing.assert_array_equal(brow_descriptor(rgb, points), brow_descriptor(grey, points))
    # a colour image is described by its grey levels (converted before or after the warp: rounding apart)
    colour = np.stack([_image(0), _image(1), _image(2)], axis=2)
    converted = brow_descriptor(cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY), points)
    assert _cosine(brow_descriptor(colour, points), converted) > 0.99
    assert _cosine(brow_descriptor(colour[..., [2, 1, 0]], points), converted) < 0.95, "RGB, not BGR"
    # 3-D points (MediaPipe's x, y, z) use x and y only
    with_z = np.column_stack([points, np.random.default_rng(5).normal(size=468)])
    np.testing.assert_array_equal(brow_descriptor(grey, with_z), brow_descriptor(grey, points))


# -- the head ----------------------------------------------------------------------------------
def _random_head(num_aus: int, dim: int, rows: list[int], seed: int = 0) -> AppearanceHead:
    """A head whose AUs ``rows`` have random weights (the others none), with a random mean and scale."""
    generator = torch.Generator().manual_seed(seed)
    head = AppearanceHead(num_aus, dim)
    with torch.no_grad():
        head.mean.copy_(torch.randn(dim, generator=generator))
        head.scale.copy_(0.5 + torch.rand(dim, generator=generator))
        for row in rows:
            head.weight[row] = 0.3 * torch.randn(dim, generator=generator)
    return head


def test_a_new_head_covers_nothing_and_gives_no_offsets() -> None:
    head = AppearanceHead(4, 10)
    assert head.dim == 10 and not head.covered.any()
    out = head(torch.randn(2, 3, 10), torch.ones(2, 3, dtype=torch.bool))
    assert out.shape == (2, 3, 4) and torch.equal(out, torch.zeros(2, 3, 4))


def test_head_offsets_follow_the_formula_and_are_zero_without_a_descriptor() -> None:
    head = _random_head(4, 10, rows=[1, 3])
    descriptors = torch.randn(2, 5, 10, generator=torch.Generator().manual_seed(1))
    present = torch.tensor([[True, False, True, True, False], [False, True, True, False, True]])
    out = head(descriptors, present)
    d, mean, scale, weight = (t.double().numpy() for t in (descriptors, head.mean, head.scale, head.weight))
    want = ((d - mean) / scale) @ weight.T
    np.testing.assert_allclose(out[present].numpy(), want[present.numpy()], rtol=1e-5, atol=1e-5)
    assert torch.equal(out[~present], torch.zeros_like(out[~present]))
    assert np.abs(want[present.numpy()][:, [1, 3]]).min() > 0, "the covered AUs get non-zero offsets"
    assert torch.equal(out[..., [0, 2]], torch.zeros_like(out[..., [0, 2]]))
    # half-precision descriptors are read as float32
    np.testing.assert_allclose(head(descriptors.half(), present).numpy(), out.numpy(), atol=5e-2)


def test_covered_marks_the_aus_with_a_non_zero_weight() -> None:
    head = AppearanceHead(5, 6)
    with torch.no_grad():
        head.weight[1, 2] = -1e-3  # one weight is enough
        head.weight[4] = 1.0
    assert head.covered.tolist() == [False, True, False, False, True]


# -- the torch refiner -------------------------------------------------------------------------
SMALL = NetConfig(
    modality="mesh", dim=16, token_hidden=16, heads=2, spatial_layers=1, temporal_layers=1, expression_correction=True
)
AUS = [1, 2, 4, 6, 12]
#: The AU columns (not codes) the test heads read out; the others keep the mesh network's logits.
COVERED = [0, 2]
HEAD_DIM = 12


def _headless(calibrated: bool = True) -> AUFaceRefiner:
    torch.manual_seed(0)
    model = AUFaceRefiner(face_geometry(AUS, expression_dim=6), SMALL, clip_length=8, calibrated=calibrated)
    with torch.no_grad():
        for parameter in model.parameters():  # trained-looking weights: the zero-initialised heads too
            parameter.add_(0.3 * torch.randn_like(parameter))
        model.pos_weight.copy_(torch.linspace(1.0, 6.0, len(model.pos_weight)))
    return model.eval()


def _with_head(model: AUFaceRefiner) -> AUFaceRefiner:
    """A copy of ``model`` with an appearance head of random weights for the AUs ``COVERED``."""
    headed = copy.deepcopy(model)
    head = headed.add_appearance_head(HEAD_DIM)
    head.load_state_dict(_random_head(len(AUS), HEAD_DIM, COVERED, seed=3).state_dict())
    head.weight.mul_(4.0)  # offsets of a few logits: the probabilities move clearly
    return headed.eval()


@pytest.fixture(scope="module")
def models() -> tuple[AUFaceRefiner, AUFaceRefiner]:
    """(headless, with a head): the same mesh network."""
    model = _headless()
    return model, _with_head(model)


def _frames(model: AUFaceRefiner, clips: int, length: int, seed: int):
    """Meshes ``[B,T,V,3]`` near the template, ``valid [B,T]`` (some frames without a face) and descriptors
    ``[B,T,D]`` (zeros without a face, as a reconstructor gives them)."""
    rng = np.random.default_rng(seed)
    vertices, valid = noisy_meshes(model, clips, length, rng)
    valid[-1, 0] = False
    vertices[~valid] = 0.0
    descriptors = rng.normal(size=(clips, length, HEAD_DIM)).astype(np.float32)
    descriptors[~valid] = 0.0
    return vertices, valid, descriptors


def _batch(vertices: np.ndarray, valid: np.ndarray) -> dict[str, torch.Tensor]:
    """Clips ``[B,T,V,3]`` as a refiner batch, every clip with the first frame as S̄."""
    return {
        "vertices": torch.from_numpy(vertices),
        "valid": torch.from_numpy(valid),
        "reference": torch.from_numpy(vertices[0, 0]).expand(len(vertices), -1, -1),
    }


def _record(vertices, valid, descriptors=None) -> CoarseFrames:
    optional = {} if descriptors is None else {"appearance": torch.from_numpy(descriptors)}
    return CoarseFrames.from_canonical(
        torch.from_numpy(vertices), torch.from_numpy(valid), 30.0, "mediapipe", **optional
    )


def test_frame_inputs_name_the_descriptors_only_with_a_head(models) -> None:
    headless, headed = models
    assert headless.appearance is None and "appearance" not in headless.frame_inputs
    assert headed.frame_inputs == ("appearance",)
    assert headed.appearance.covered.tolist() == [k in COVERED for k in range(len(AUS))]


def test_the_head_moves_only_covered_logits_of_frames_with_a_face(models) -> None:
    headless, headed = models
    vertices, valid, descriptors = _frames(headless, 3, 8, seed=1)
    batch = {
        "vertices": torch.from_numpy(vertices),
        "valid": torch.from_numpy(valid),
        "reference": torch.from_numpy(vertices[0, 0]).expand(3, -1, -1),
    }
    with torch.no_grad():
        base = headless(batch)
        with pytest.warns(AppearanceMissingWarning):
            without = headed(batch)  # no "appearance" in the batch
        out = headed({**batch, "appearance": torch.from_numpy(descriptors)})
    for name in ("logits", "probs", "delta", "refined"):
        assert torch.equal(without[name], base[name]), name
    for name in ("delta", "refined"):
        assert torch.equal(out[name], base[name]), f"the head changes {name}"
    uncovered = [k for k in range(len(AUS)) if k not in COVERED]
    assert torch.equal(out["logits"][..., uncovered], base["logits"][..., uncovered])
    change = (out["logits"] - base["logits"]).numpy()
    want = headed.appearance(torch.from_numpy(descriptors), torch.from_numpy(valid)).detach().numpy()
    np.testing.assert_allclose(change, want, atol=1e-5)
    assert np.abs(change[valid][:, COVERED]).min() > 1e-3
    assert np.array_equal(change[~valid], np.zeros_like(change[~valid]))
    np.testing.assert_allclose(out["probs"].numpy(), headed.probabilities(out["logits"]).numpy(), atol=1e-7)


def test_a_record_without_descriptors_gets_the_headless_result(models) -> None:
    headless, headed = models
    vertices, valid, descriptors = _frames(headless, 1, 30, seed=2)
    plain, described = _record(vertices[0], valid[0]), _record(vertices[0], valid[0], descriptors[0])
    base = headless.refine(plain)
    with pytest.warns(AppearanceMissingWarning, match="no appearance descriptors"):
        headed_plain = headed.refine(plain)
    for got in (headed_plain, headless.refine(described)):
        assert torch.equal(got.au_probs, base.au_probs) and torch.equal(got.vertices, base.vertices)
    refined = headed.refine(described)  # overlapping windows, blended
    assert torch.equal(refined.vertices, base.vertices)
    uncovered = [k for k in range(len(AUS)) if k not in COVERED]
    np.testing.assert_allclose(refined.au_probs[:, uncovered].numpy(), base.au_probs[:, uncovered].numpy(), atol=1e-6)
    moved = (refined.au_probs - base.au_probs)[torch.from_numpy(valid[0])][:, COVERED].abs()
    assert moved.min() > 1e-4 and moved.max() > 0.05

    _, photos_base = headless.refine_photos(plain)
    with pytest.warns(AppearanceMissingWarning):
        _, photos_plain = headed.refine_photos(plain)
    _, photos = headed.refine_photos(described)
    assert torch.equal(photos_plain.au_probs, photos_base.au_probs)
    assert (photos.au_probs - photos_base.au_probs)[torch.from_numpy(valid[0])][:, COVERED].abs().max() > 0.05


def test_a_checkpoint_with_a_head_loads_with_it(models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    headless, headed = models
    # as benchmarks/fit_appearance.py writes it: the training checkpoint's inference part
    export_checkpoint(save_refiner(headed, tmp_path / "training.ckpt"), tmp_path / "head.ckpt")
    loaded = AUFaceRefiner.load(tmp_path / "head.ckpt")
    assert loaded.appearance is not None and loaded.appearance.dim == HEAD_DIM
    assert loaded.frame_inputs == ("appearance",)
    for name in ("mean", "scale", "weight"):
        assert torch.equal(getattr(loaded.appearance, name), getattr(headed.appearance, name)), name
    vertices, valid, descriptors = _frames(headless, 1, 12, seed=4)
    record = _record(vertices[0], valid[0], descriptors[0])
    assert torch.equal(loaded.refine(record).au_probs, headed.refine(record).au_probs)

    plain = AUFaceRefiner.load(save_refiner(headless, tmp_path / "plain.ckpt"))
    assert plain.appearance is None and plain.frame_inputs == ()

    state = {"model.appearance.mean": torch.zeros(7), "model.net.x": torch.zeros(1)}
    fresh = _headless()
    fresh.add_heads_of(state, prefix="model.")
    assert fresh.appearance is not None and fresh.appearance.dim == 7
    fresh.add_heads_of({"appearance.mean": torch.zeros(9)})  # a model that has a head keeps it
    assert fresh.appearance.dim == 7
    other = _headless()
    other.add_heads_of(state)  # the keys are under "model.": no head
    assert other.appearance is None

    monkeypatch.setenv("AU_FACE_CACHE", str(tmp_path / "cache"))
    exported = load_array_refiner(tmp_path / "head.ckpt")
    assert isinstance(exported, NumpyRefiner) and exported.frame_inputs == ("appearance",)


# -- the NumPy twin ----------------------------------------------------------------------------
def test_the_numpy_twin_applies_the_head_as_torch_does(models) -> None:
    headless, headed = models
    twin, plain_twin = NumpyRefiner.from_refiner(headed), NumpyRefiner.from_refiner(headless)
    assert twin.frame_inputs == ("appearance",) and plain_twin.frame_inputs == ()
    vertices, valid, descriptors = _frames(headless, 4, 8, seed=5)
    reference = headed.reference(_record(vertices[0], valid[0])).numpy()

    refined, probs = twin.refine_windows({"vertices": vertices, "valid": valid, "appearance": descriptors}, reference)
    clips = [_record(v, m, d) for v, m, d in zip(vertices, valid, descriptors)]
    want = headed.refine_clips(clips, torch.from_numpy(reference))
    np.testing.assert_allclose(probs, np.stack([o.au_probs.numpy() for o in want]), atol=1e-5)
    np.testing.assert_allclose(refined, np.stack([o.vertices.numpy() for o in want]), atol=1e-4)

    plain_refined, plain_probs = plain_twin.refine_windows({"vertices": vertices, "valid": valid}, reference)
    assert np.abs(probs - plain_probs)[valid][:, COVERED].max() > 0.05, "the head must matter to the comparison"
    # no descriptors, or a headless twin given them: the headless numbers
    with pytest.warns(AppearanceMissingWarning):
        twin_plain = twin.refine_windows({"vertices": vertices, "valid": valid}, reference)
    for got in (
        twin_plain,
        plain_twin.refine_windows({"vertices": vertices, "valid": valid, "appearance": descriptors}, reference),
    ):
        np.testing.assert_array_equal(got[0], plain_refined)
        np.testing.assert_array_equal(got[1], plain_probs)

    photos, photo_valid = vertices[:2].reshape(-1, *vertices.shape[2:]), valid[:2].reshape(-1)
    photo_descriptors = descriptors[:2].reshape(-1, HEAD_DIM)
    references, photo_refined, photo_probs = twin.refine_each(
        {"vertices": photos, "valid": photo_valid, "appearance": photo_descriptors}
    )
    want_references, want_photos = headed.refine_photos(_record(photos, photo_valid, photo_descriptors))
    np.testing.assert_allclose(references, want_references.numpy(), atol=1e-5)
    np.testing.assert_allclose(photo_refined, want_photos.vertices.numpy(), atol=1e-4)
    np.testing.assert_allclose(photo_probs, want_photos.au_probs.numpy(), atol=1e-5)
    plain_each = plain_twin.refine_each({"vertices": photos, "valid": photo_valid})
    with pytest.warns(AppearanceMissingWarning):
        twin_each = twin.refine_each({"vertices": photos, "valid": photo_valid})
    for got, want_array in zip(twin_each, plain_each):
        np.testing.assert_array_equal(got, want_array)
    assert np.abs(photo_probs - plain_each[2])[photo_valid][:, COVERED].max() > 0.05


# -- records -----------------------------------------------------------------------------------
def test_records_carry_descriptors_through_slice_concat_and_files(tmp_path: Path) -> None:
    vertices = np.random.default_rng(0).normal(size=(4, 468, 3)).astype(np.float32)
    descriptors = np.random.default_rng(1).random((4, DESCRIPTOR_SIZE)).astype(np.float32)
    record = _record(vertices, np.ones(4, dtype=bool), descriptors)
    assert torch.equal(CoarseFrames.concat([record.slice(0, 1), record.slice(1, 4)]).appearance, record.appearance)
    record.save(tmp_path / "frames.npz")
    assert torch.equal(CoarseFrames.load(tmp_path / "frames.npz").appearance, record.appearance)
    with pytest.raises(CoarseFramesError, match="appearance"):
        _record(vertices, np.ones(4, dtype=bool), descriptors[:3])


def _posed_record(points: np.ndarray, valid: np.ndarray) -> CoarseFrames:
    """A record whose posed vertices are ``points [T,468,3]`` (pixels): scale 2, a roll, a translation."""
    n = len(points)
    angle = np.deg2rad(12.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    translation = np.array([40.0, 25.0, 3.0])
    canonical = (points - translation) @ rotation / 2.0  # v = R^T (x - t) / s, for row vectors
    return CoarseFrames(
        vertices=torch.from_numpy(canonical.astype(np.float32)),
        valid=torch.from_numpy(valid),
        rotation=torch.from_numpy(np.repeat(rotation[None], n, 0).astype(np.float32)),
        translation=torch.from_numpy(np.repeat(translation[None], n, 0).astype(np.float32)),
        scale=torch.full((n,), 2.0),
        landmarks2d=torch.zeros(n, 68, 2),
        timestamps=torch.arange(n, dtype=torch.float64) / 30.0,
        fps=30.0,
        topology="mediapipe",
    )


def test_with_appearance_describes_each_frame_with_a_face_at_its_posed_points() -> None:
    points = np.stack([_points(seed=0), _points(right=(120.0, 150.0), left=(185.0, 132.0), seed=1), _points(seed=2)])
    points = np.concatenate([points, np.zeros((3, 468, 1))], axis=2)
    valid = np.array([True, False, True])
    points[~valid] = 0.0  # no face: all points at 0, where no patch can be cut
    frames = _posed_record(points, valid)
    grey = _image(0)
    images = [np.repeat(grey[..., None], 3, axis=2), _image(1), _image(2)]  # RGB and grey
    described = with_appearance(frames, images)
    assert frames.appearance is None, "the record given is not changed"
    assert described.appearance.shape == (3, DESCRIPTOR_SIZE) and described.appearance.dtype == torch.float32
    assert torch.equal(described.appearance[1], torch.zeros(DESCRIPTOR_SIZE))
    posed = frames.posed_vertices().numpy()
    np.testing.assert_allclose(posed[valid], points[valid], atol=1e-3)
    for i in (0, 2):
        got = described.appearance[i].numpy()
        np.testing.assert_array_equal(got, appearance_descriptor(images[i], posed[i]))
        assert _cosine(got[region_part(BROW)], brow_descriptor(images[i], points[i])) > 0.99
    assert (
        _cosine(described.appearance[0, region_part(BROW)].numpy(), brow_descriptor(grey, frames.vertices[0].numpy()))
        < 0.9
    ), "the canonical vertices are not where the face is in the image"
    assert torch.equal(described.vertices, frames.vertices) and torch.equal(described.valid, frames.valid)


def test_with_appearance_needs_one_image_per_frame() -> None:
    frames = _posed_record(np.zeros((2, 468, 3)), np.zeros(2, dtype=bool))
    with pytest.raises(ValueError, match="2 frames but 3 images"):
        with_appearance(frames, [_image(0)] * 3)
    with pytest.raises(ValueError):
        with_appearance(frames, [_image(0)])
    assert torch.equal(with_appearance(frames, [_image(0)] * 2).appearance, torch.zeros(2, DESCRIPTOR_SIZE))


# -- calibration of a model whose change touched only some AUs ---------------------------------
def _sources(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """AU0 separates at 0; AU1's positives sit near 2 and its negatives near 1 (best offset well above 0)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((2000, 2)) < 0.3).astype(int)
    logits = np.where(labels == 1, [1.0, 2.0], [-1.0, 1.0]) + rng.normal(0, [0.4, 0.1], labels.shape)
    return [(logits, labels)]


def test_unchosen_aus_keep_offset_zero_when_the_neutral_budget_does_not_bind() -> None:
    sources = _sources(0)
    neutral = np.full((200, 2), -5.0)
    every = choose_offsets(sources, neutral, slack=0.0)
    assert 1.0 < every[1] < 2.0 and abs(every[0]) < 0.3
    first = choose_offsets(sources, neutral, slack=0.0, chosen=np.array([True, False]))
    assert first[1] == 0.0 and first[0] == pytest.approx(every[0])
    second = choose_offsets(sources, neutral, slack=0.0, chosen=np.array([False, True]))
    assert second[0] == 0.0 and second[1] == pytest.approx(every[1])
    np.testing.assert_array_equal(choose_offsets(sources, neutral, slack=0.0, chosen=np.array([True, True])), every)
    assert choose_offsets(sources, neutral, chosen=[False, False]).tolist() == [0.0, 0.0]


def test_a_binding_neutral_budget_raises_an_unchosen_au() -> None:
    sources = _sources(1)
    rng = np.random.default_rng(2)
    neutral = np.column_stack([np.full(500, -5.0), rng.normal(0.5, 0.2, 500)])  # AU1 on in most neutral faces at 0
    offsets = choose_offsets(
        sources, neutral, max_neutral_rate=1.0, max_neutral_aus=0.4, slack=0.0, chosen=np.array([True, False])
    )
    on = (neutral >= offsets).mean(0)
    assert offsets[1] > 0.3 and on.sum() <= 0.4 + 1e-9
    assert (neutral[:, 1] >= offsets[1] - 0.05).mean() > 0.4, "raised no further than the budget needs"
    unbound = choose_offsets(
        sources, neutral, max_neutral_rate=1.0, max_neutral_aus=2.0, slack=0.0, chosen=np.array([True, False])
    )
    assert unbound[1] == 0.0 and offsets[0] == pytest.approx(unbound[0])


# -- the reconstructor's optional outputs during a run -----------------------------------------
def test_only_inputs_switches_crops_and_descriptors_and_restores_them() -> None:
    reconstructor = SimpleNamespace(crop_size=112, appearance=False)
    with only_inputs(reconstructor, ("appearance",)):
        assert (reconstructor.crop_size, reconstructor.appearance) == (0, True)
    assert (reconstructor.crop_size, reconstructor.appearance) == (112, False)
    with only_inputs(reconstructor, ("crops",)):
        assert (reconstructor.crop_size, reconstructor.appearance) == (112, False)
    with only_inputs(reconstructor, ("crops", "appearance")):
        assert (reconstructor.crop_size, reconstructor.appearance) == (112, True)
    assert (reconstructor.crop_size, reconstructor.appearance) == (112, False)

    asked = SimpleNamespace(crop_size=64, appearance=True)
    with pytest.raises(RuntimeError), only_inputs(asked, ()):
        assert (asked.crop_size, asked.appearance) == (0, False)
        raise RuntimeError("the run failed")
    assert (asked.crop_size, asked.appearance) == (64, True), "restored after an error too"

    no_crops = SimpleNamespace(crop_size=0, appearance=False)
    with only_inputs(no_crops, ("crops", "appearance")):
        assert (no_crops.crop_size, no_crops.appearance) == (0, True)
    assert (no_crops.crop_size, no_crops.appearance) == (0, False)

    bare = SimpleNamespace()  # a reconstructor with neither option
    with only_inputs(bare, ("crops", "appearance")):
        assert vars(bare) == {}
    assert vars(bare) == {}


def test_entries_that_are_not_finite_count_as_absent(models) -> None:
    """A flipped training item's descriptor is NaN (unknown): no offset; an absent part (NaN entries) adds
    nothing, as if those entries were at the head's mean; in torch and in NumPy."""
    headless, headed = models
    vertices, valid, descriptors = _frames(headless, 2, 6, seed=4)
    descriptors[0, 1] = np.nan
    descriptors[1, 2, :5] = np.inf
    batch = _batch(vertices, valid)
    at_mean = descriptors.copy()
    at_mean[1, 2, :5] = headed.appearance.mean[:5].numpy()
    with torch.no_grad():
        base = headless(batch)["logits"]
        out = headed({**batch, "appearance": torch.from_numpy(descriptors)})["logits"]
        want = headed({**batch, "appearance": torch.from_numpy(at_mean)})["logits"]
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, 1], base[0, 1])
    torch.testing.assert_close(out[1, 2], want[1, 2])
    assert (out[1, 2] - base[1, 2])[COVERED].abs().max() > 1e-3, "the finite entries still count"
    twin = NumpyRefiner.from_refiner(headed)
    reference = vertices[0, 0]
    _, probs = twin.refine_windows({"vertices": vertices, "valid": valid, "appearance": descriptors}, reference)
    _, want_probs = twin.refine_windows({"vertices": vertices, "valid": valid, "appearance": at_mean}, reference)
    assert np.isfinite(probs[valid]).all()
    np.testing.assert_allclose(probs, want_probs, atol=1e-6)


def test_a_head_fitted_on_the_brow_part_alone_reads_the_first_entries(models) -> None:
    """Heads made before the mouth part (3,780 long) read the brow part of a longer descriptor; a
    descriptor shorter than the head is a clear error, in torch and in NumPy."""
    headless, headed = models
    vertices, valid, descriptors = _frames(headless, 2, 6, seed=5)
    extra = np.random.default_rng(6).normal(size=(*descriptors.shape[:2], 7)).astype(np.float32)
    longer = np.concatenate([descriptors, extra], -1)
    batch = _batch(vertices, valid)
    with torch.no_grad():
        want = headed({**batch, "appearance": torch.from_numpy(descriptors)})["logits"]
        torch.testing.assert_close(headed({**batch, "appearance": torch.from_numpy(longer)})["logits"], want)
        with pytest.raises(ValueError, match="older au_face"):
            headed({**batch, "appearance": torch.from_numpy(descriptors[..., :-1].copy())})
    twin = NumpyRefiner.from_refiner(headed)
    reference = vertices[0, 0]
    _, short = twin.refine_windows({"vertices": vertices, "valid": valid, "appearance": descriptors}, reference)
    _, long = twin.refine_windows({"vertices": vertices, "valid": valid, "appearance": longer}, reference)
    np.testing.assert_allclose(long, short, atol=1e-6)
    with pytest.raises(ValueError, match="older au_face"):
        twin.refine_windows({"vertices": vertices, "valid": valid, "appearance": descriptors[..., :-1]}, reference)


def test_a_part_over_its_limit_counts_as_absent(models, tmp_path: Path) -> None:
    """A head with part limits reads a part whose standardised root mean square exceeds its limit as
    absent (as if NaN), and the others as before; the limits survive a checkpoint and the NumPy twin."""
    headless, headed = models
    gated = copy.deepcopy(headed)
    head = gated.add_appearance_head(HEAD_DIM, parts=2)
    head.load_state_dict(
        {**headed.appearance.state_dict(), "part_bounds": head.part_bounds, "part_limits": head.part_limits}
    )
    with torch.no_grad():
        head.part_bounds.copy_(torch.tensor([[0, 5], [5, HEAD_DIM]]))
        head.part_limits.copy_(torch.tensor([1.5, 1.5]))
    vertices, valid, descriptors = _frames(headless, 2, 6, seed=7)
    mean, scale = head.mean.numpy(), head.scale.numpy()
    descriptors = (mean + 0.5 * scale * np.sign(descriptors - mean)).astype(np.float32)  # RMS 0.5: usual
    descriptors[0, 2, 5:] = mean[5:] + 3.0 * scale[5:]  # RMS 3 on the second part: unusual
    absent = descriptors.copy()
    absent[0, 2, 5:] = np.nan
    batch = _batch(vertices, valid)
    with torch.no_grad():
        out = gated({**batch, "appearance": torch.from_numpy(descriptors)})["logits"]
        want = gated({**batch, "appearance": torch.from_numpy(absent)})["logits"]
        ungated = headed({**batch, "appearance": torch.from_numpy(descriptors)})["logits"]
    torch.testing.assert_close(out, want)
    assert (out[0, 2] - ungated[0, 2]).abs().max() > 1e-3, "the unusual part was dropped"
    usual = torch.ones_like(out[..., 0], dtype=torch.bool)
    usual[0, 2] = False
    torch.testing.assert_close(out[usual], ungated[usual])

    export_checkpoint(save_refiner(gated, tmp_path / "training.ckpt"), tmp_path / "gated.ckpt")
    loaded = AUFaceRefiner.load(tmp_path / "gated.ckpt")
    assert torch.equal(loaded.appearance.part_limits, head.part_limits)
    assert torch.equal(loaded.appearance.part_bounds, head.part_bounds)
    twin = NumpyRefiner.from_refiner(loaded)
    reference = vertices[0, 0]
    _, probs = twin.refine_windows({"vertices": vertices, "valid": valid, "appearance": descriptors}, reference)
    with torch.no_grad():
        torch_probs = loaded.probabilities(out)
    np.testing.assert_allclose(probs[valid], torch_probs.numpy()[valid], atol=1e-5)
