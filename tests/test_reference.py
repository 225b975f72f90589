"""S̄ while the frames arrive: the schedule of fits, the bound on each update, and the streamed
refinement that uses it (same rows however the frames arrive, same as the in-memory refine)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from au_face.coarse.base import SHOT_FIELD, CoarseFrames
from au_face.coarse.stream import FrameStore
from au_face.inference.passes import WindowStream
from au_face.model.reference import REFERENCE_STEP, REFERENCE_WARMUP, ReferenceSchedule, bounded_update, fit_frames
from au_face.model.refiner import Refinement


def test_fits_come_at_the_warmup_then_each_doubling_of_faces() -> None:
    valid = np.ones(1100, dtype=bool)
    valid[:10] = False  # no face in the first 10 frames
    valid[200:230] = False
    whole = ReferenceSchedule()
    whole.add(valid)
    # the 128th face is frame 137, the 256th frame 295 (30 more without), the 512th frame 551, the 1024th frame 1063
    assert whole.points == [138, 296, 552, 1064]
    pieces = ReferenceSchedule()
    for start in range(0, len(valid), 37):
        pieces.add(valid[start : start + 37])
    assert pieces.points == whole.points and pieces.frames == 1100
    assert [whole.point_for(stop) for stop in (16, 138, 295, 296, 600, 1100)] == [138, 138, 138, 296, 552, 1064]


def test_a_video_with_few_faces_gets_one_fit_over_all_its_frames() -> None:
    schedule = ReferenceSchedule()
    schedule.add(np.ones(REFERENCE_WARMUP - 1, dtype=bool))
    assert schedule.points == [] and schedule.point_for(40) is None  # wait: more frames may come
    assert schedule.point_for(40, total=REFERENCE_WARMUP - 1) == REFERENCE_WARMUP - 1
    assert len(fit_frames(1000)) == 256 and fit_frames(1000)[[0, -1]].tolist() == [0, 999]
    assert fit_frames(72).tolist() == list(range(72))


def test_an_update_moves_no_vertex_further_than_the_step() -> None:
    rng = np.random.default_rng(0)
    previous = rng.normal(size=(50, 3)).astype(np.float32)
    change = rng.normal(size=(50, 3)).astype(np.float32)
    change[:10] *= 0.01  # small changes pass whole
    updated = bounded_update(previous, previous + change)
    moved = np.linalg.norm(updated - previous, axis=-1)
    assert moved.max() <= REFERENCE_STEP + 1e-6
    np.testing.assert_allclose(updated[:10], (previous + change)[:10], atol=1e-6)
    large = np.linalg.norm(change, axis=-1) > REFERENCE_STEP
    np.testing.assert_allclose(moved[large], REFERENCE_STEP, atol=1e-5)  # the direction is kept, the length capped
    direction = (updated - previous)[large] / moved[large, None]
    np.testing.assert_allclose(
        direction, change[large] / np.linalg.norm(change[large], axis=-1, keepdims=True), atol=1e-4
    )
    np.testing.assert_array_equal(bounded_update(None, previous), previous)


@dataclass
class MeanRefiner:
    """S̄ is the mean of the valid frames; outputs are the input and its distance to S̄: they show the S̄ used."""

    clip_length: int = 16
    topology_name: str = "mediapipe"
    references: list[np.ndarray] = field(default_factory=list)

    def reference(self, coarse: CoarseFrames) -> torch.Tensor:
        return coarse.mean_shape()

    def refine(self, coarse: CoarseFrames, reference: torch.Tensor | None = None) -> Refinement:
        self.references.append(reference.numpy().copy())
        distance = (coarse.vertices - reference).norm(dim=-1).mean(dim=-1, keepdim=True)
        return Refinement(coarse.vertices.clone(), distance, [12])


def _store(tmp_path: Path, vertices: np.ndarray, valid: np.ndarray) -> FrameStore:
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = FrameStore(tmp_path)
    coarse = CoarseFrames.from_canonical(torch.from_numpy(vertices), torch.from_numpy(valid), 30.0, "mediapipe")
    for name, array in coarse.to_numpy().items():
        if name not in ("fps", "topology"):
            store.append(name, array)
    return store


def _jumping_face(n: int = 600, jump_at: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """A face whose shape moves by 2 cm at ``jump_at``: far beyond one update's bound."""
    rng = np.random.default_rng(1)
    vertices = rng.normal(scale=0.05, size=(n, 6, 3)).astype(np.float32)
    vertices[jump_at:] += 2.0
    valid = np.ones(n, dtype=bool)
    valid[7] = False
    return vertices * valid[:, None, None], valid


def test_streamed_refinement_uses_the_schedule_within_the_bound(tmp_path: Path) -> None:
    vertices, valid = _jumping_face()
    store = _store(tmp_path / "a", vertices, valid)
    refiner = MeanRefiner()
    stream = WindowStream(refiner, store, threads=None)
    stream.advance(100)
    assert "refined" not in store  # no S̄ before 128 faces
    stream.advance(130)
    assert store.shape("refined")[0] > 90  # the first fit (frames 0..129) is in: refining started
    stream.advance(600, final=True)
    assert stream.finished and store.shape("refined")[0] == 600

    # the fits: frames 0..129 (128 faces), 0..257, 0..513 (at most 256 of them each); each window uses the
    # latest one at or before its end
    first, second, third = (vertices[fit_frames(n)][valid[fit_frames(n)]].mean(axis=0) for n in (129, 257, 513))
    used = {r.tobytes(): r for r in refiner.references}
    assert len(used) == 3
    np.testing.assert_allclose(refiner.references[0], first, atol=1e-5)
    np.testing.assert_allclose(refiner.references[-1], stream.reference, atol=0)
    fits = list(used.values())
    np.testing.assert_allclose(fits[1], second, atol=1e-5)  # the frames before the jump: within the bound
    step = np.linalg.norm(fits[2] - fits[1], axis=-1)
    assert step.max() <= REFERENCE_STEP + 1e-6 and step.min() > REFERENCE_STEP - 1e-4  # the jump is capped
    assert np.linalg.norm(third - fits[1], axis=-1).min() > 0.5

    # the same rows, and S̄, however the frames arrive
    whole = _store(tmp_path / "b", vertices, valid)
    again = WindowStream(MeanRefiner(), whole, threads=None)
    again.advance(600, final=True)
    np.testing.assert_array_equal(whole.read("au_probs", 0, 600), store.read("au_probs", 0, 600))
    np.testing.assert_array_equal(again.reference, stream.reference)


@dataclass
class WindowMeanRefiner(MeanRefiner):
    """Every frame of a window gets the window's mean x: a frame's output shows which frames shared its windows."""

    def refine(self, coarse: CoarseFrames, reference: torch.Tensor | None = None) -> Refinement:
        mean_x = coarse.vertices[coarse.valid][..., 0].mean()
        return Refinement(coarse.vertices.clone(), mean_x.expand(len(coarse), 1).clone(), [12])


def test_no_window_spans_a_cut(tmp_path: Path) -> None:
    n, cut = 200, 90
    vertices = np.zeros((n, 6, 3), dtype=np.float32)
    vertices[..., 0] = np.sin(np.arange(n) / 7.0)[:, None]  # a face that moves
    vertices[cut:, :, 0] += 10.0  # and another after the cut
    valid = np.ones(n, dtype=bool)
    shots = (np.arange(n) >= cut).astype(np.int32)

    def streamed(root: Path, with_shots: bool, pieces: int, start: int = 0, stop: int = n) -> np.ndarray:
        store = _store(root, vertices[start:stop], valid[start:stop])
        if with_shots:
            store.append(SHOT_FIELD, shots[start:stop])
        stream = WindowStream(WindowMeanRefiner(), store, threads=None, reference=np.zeros((6, 3), np.float32))
        for rows in range(pieces, stop - start, pieces):
            stream.advance(rows)
        stream.advance(stop - start, final=True)
        return store.read("au_probs", 0, n)[:, 0]

    alone = np.concatenate(
        [streamed(tmp_path / "first", True, 30, stop=cut), streamed(tmp_path / "second", True, 30, start=cut)]
    )
    assert alone[:cut].max() < 2 and alone[cut:].min() > 8
    for pieces in (n, 30, 45):  # (45: the cut comes on the first frame of a piece)
        np.testing.assert_allclose(streamed(tmp_path / f"split{pieces}", True, pieces), alone, atol=1e-6)
    across = streamed(tmp_path / "across", False, n)  # without shots, frames by the cut mix both faces
    assert across[cut - 1] > 2 and across[cut] < 8
    np.testing.assert_allclose(across[: cut - 16], alone[: cut - 16], atol=1e-6)


def test_in_memory_refine_gives_the_streamed_rows(tmp_path: Path) -> None:
    from au_face.model.refiner import AUFaceRefiner
    from au_face.nn.net import NetConfig
    from dataset_fixtures import face_geometry

    torch.manual_seed(0)
    net = NetConfig(modality="mesh", dim=16, token_hidden=16, spatial_layers=1, temporal_layers=1, heads=2)
    model = AUFaceRefiner(face_geometry([6, 12]), net, clip_length=16).eval()
    n = 300
    template = torch.from_numpy(model.geometry.topology.template).float()
    rng = np.random.default_rng(2)
    vertices = (
        template + torch.from_numpy(rng.normal(scale=0.1, size=(n, *template.shape)).astype(np.float32))
    ).numpy()
    vertices[150:] += 0.3  # S̄ changes after the first fit
    valid = np.ones(n, dtype=bool)
    valid[40:45] = False
    vertices *= valid[:, None, None]
    store = _store(tmp_path, vertices, valid)
    stream = WindowStream(model, store, threads=None)
    for rows in range(64, n, 64):
        stream.advance(rows)
    stream.advance(n, final=True)
    coarse = CoarseFrames.from_canonical(torch.from_numpy(vertices), torch.from_numpy(valid), 30.0, "mediapipe")
    in_memory = model.refine(coarse)
    probs = store.read("au_probs", 0, n)
    np.testing.assert_allclose(probs[valid], in_memory.au_probs.numpy()[valid], atol=1e-5)
    np.testing.assert_allclose(store.read("refined", 0, n), in_memory.vertices.numpy(), atol=1e-5)
    whole_video = model.refine(coarse, reference=model.reference(coarse))
    assert np.abs(whole_video.au_probs.numpy()[valid] - probs[valid]).max() > 1e-4  # the schedule did matter


if __name__ == "__main__":
    pytest.main([__file__])
