"""MediaPipe topology (triangles, template, iBUG-68 table) and the MediaPipe coarse reconstructor."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("mediapipe")

from au_face.coarse.base import CoarseFrames
from au_face.coarse.mediapipe import MediaPipeReconstructor
from au_face.coarse.stream import NoFaceError, reconstruct_video, reconstruct_video_to_file
from au_face.faces.align import similarity_fit
from au_face.faces.mediapipe import (
    EYE_CORNER_DISTANCE_CM,
    IBUG68_TO_MEDIAPIPE,
    STABLE_VERTICES,
    face_normals,
    mediapipe_topology,
    mirror_map,
    tesselation_edges,
    triangles_from_edges,
)
from au_face.faces.registry import load_topology
from au_face.faces.topology import FaceTopology
from au_face.io.video import VideoReader

#: iBUG-68 index of each point's mirror image (left <-> right).
IBUG_FLIP = (
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> FaceTopology:
    return mediapipe_topology(tmp_path_factory.mktemp("topology_cache"))


@pytest.fixture(scope="module")
def reconstructor() -> MediaPipeReconstructor:
    return MediaPipeReconstructor()


@pytest.fixture(scope="module")
def single_face_frames(video_dir: Path) -> list:
    return list(VideoReader(video_dir / "single_face.mp4"))


@pytest.fixture(scope="module")
def single_face(reconstructor: MediaPipeReconstructor, video_dir: Path) -> CoarseFrames:
    chunks = list(reconstruct_video(video_dir / "single_face.mp4", reconstructor, chunk_size=32))
    assert [len(c) for c in chunks] == [32, 32, 8]
    return CoarseFrames.concat(chunks)


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


# ----------------------------------------------------------------------------------- topology
def test_triangles_form_an_oriented_surface_with_eye_and_mouth_holes(topology: FaceTopology) -> None:
    tris = topology.triangles
    assert tris.shape == (852, 3)  # the canonical mesh's 898 less 46 closing the eyes and mouth
    edges = topology.edges()
    undirected = {tuple(sorted(e)) for e in tesselation_edges()}
    assert {tuple(e) for e in edges} == undirected  # every mediapipe edge is used, no new ones
    uses = Counter(tuple(sorted(p)) for t in tris for p in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])))
    assert max(uses.values()) == 2
    directed = Counter((t[i], t[(i + 1) % 3]) for t in tris for i in range(3))
    assert max(directed.values()) == 1  # consistent orientation
    boundary = [e for e, n in uses.items() if n == 1]
    graph: dict[int, list[int]] = {}
    for a, b in boundary:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, []).append(a)
    assert all(len(n) == 2 for n in graph.values())
    loops, seen = [], set()
    for start in graph:
        if start in seen:
            continue
        stack, size = [start], 0
        while stack:
            v = stack.pop()
            if v not in seen:
                seen.add(v)
                size += 1
                stack.extend(graph[v])
        loops.append(size)
    assert sorted(loops)[:3] == [16, 16, 20]  # two eyes and the inner lips; the rest is the outline
    assert len(loops) == 4 and topology.num_vertices - len(edges) + len(tris) == 2 - len(loops)
    normals = face_normals(topology.template, tris)
    assert (normals[:, 2] > 0).mean() > 0.95  # towards the viewer


def test_separating_triangle_is_not_a_face() -> None:
    # a 3x3 grid of vertices, two triangles per square, vertex 9 inserted into triangle (0, 1, 4)
    grid = [(0, 4, 3), (1, 2, 5), (1, 5, 4), (3, 4, 7), (3, 7, 6), (4, 5, 8), (4, 8, 7)]
    faces = grid + [(0, 1, 9), (1, 4, 9), (4, 0, 9)]
    edges = [(t[i], t[(i + 1) % 3]) for t in faces for i in range(3)]
    tris = triangles_from_edges(edges, 10)
    assert sorted(tuple(sorted(t)) for t in tris) == sorted(tuple(sorted(t)) for t in faces)  # no (0, 1, 4)


def test_template_is_symmetric_upright_and_in_cm(topology: FaceTopology) -> None:
    t = topology.template
    mirror, _ = mirror_map(t.astype(np.float64))
    assert np.allclose(t[mirror] * [-1, 1, 1], t, atol=1e-4)
    assert (mirror == np.arange(468)).sum() > 20  # midline vertices map to themselves
    assert np.linalg.norm(t[33] - t[263]) == pytest.approx(EYE_CORNER_DISTANCE_CM, rel=1e-4)
    assert t[10, 2] == pytest.approx(t[152, 2], abs=1e-4) and t[10, 1] > t[152, 1]
    assert t[4, 2] == t[:, 2].max() or t[1, 2] == t[:, 2].max()  # the nose tip is closest to the viewer
    assert set(mirror[STABLE_VERTICES]) == set(STABLE_VERTICES)


def test_ibug68_points_are_where_they_belong(topology: FaceTopology) -> None:
    lm = topology.template[topology.landmarks68]
    assert np.array_equal(topology.landmarks68, IBUG68_TO_MEDIAPIPE) and len(set(IBUG68_TO_MEDIAPIPE)) == 68
    mirror, _ = mirror_map(topology.template.astype(np.float64))
    assert np.array_equal(mirror[IBUG68_TO_MEDIAPIPE], IBUG68_TO_MEDIAPIPE[IBUG_FLIP])
    x, y = lm[:, 0], lm[:, 1]
    eyes_y = y[36:48].mean()
    assert x[0] < x[36] < x[39] < x[42] < x[45] < x[16]  # left to right in the image
    assert y[8] == y.min() and np.argmin(y[:17]) == 8  # chin is the lowest jaw point
    assert (y[4:13] < y[48:60].min()).all()  # lower jaw below the mouth
    assert (y[17:27] > eyes_y).all()  # brows above the eyes
    assert y[27] > y[28] > y[29] > y[30] > y[33] > y[51] > y[62] > y[66] > y[57] > y[8]  # down the midline
    assert abs(x[[27, 28, 29, 30, 33, 51, 57, 62, 66, 8]]).max() < 1e-4  # on the symmetry plane
    assert (y[37:39] > y[[40, 41]]).all() and (y[43:45] > y[[46, 47]]).all()  # upper lids above lower
    assert x[48] < x[60] < x[64] < x[54]  # inner lip corners inside the outer ones


def test_topology_cache_roundtrip_and_registry(tmp_path: Path, topology: FaceTopology) -> None:
    again = mediapipe_topology(tmp_path)
    files = list(tmp_path.glob("mediapipe_topology_*.npz"))
    assert len(files) == 1
    loaded = FaceTopology.load(files[0])
    assert np.array_equal(loaded.triangles, topology.triangles)
    assert np.allclose(loaded.template, topology.template, atol=1e-5) and np.allclose(again.template, loaded.template)
    files[0].write_bytes(b"garbage")  # a damaged cache file is derived again
    from au_face.faces import mediapipe as module

    module._cached_topology.cache_clear()  # forget the in-process copy
    rebuilt = mediapipe_topology(tmp_path)
    assert np.array_equal(rebuilt.triangles, topology.triangles)
    assert FaceTopology.load(files[0]).num_vertices == 468
    assert load_topology("mediapipe").num_vertices == 468


# ------------------------------------------------------------------------------ reconstructor
def test_similarity_fit_recovers_a_pose() -> None:
    rng = np.random.default_rng(1)
    source = rng.normal(size=(30, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.linalg.det(q))
    target = 2.5 * source @ rotation.T + [3.0, -1.0, 7.0]
    s, r, t = similarity_fit(source, target[None])
    assert s[0] == pytest.approx(2.5) and np.allclose(r[0], rotation) and np.allclose(t[0], [3, -1, 7])


def test_single_face_video(
    single_face: CoarseFrames, reconstructor: MediaPipeReconstructor, single_face_frames: list
) -> None:
    rec = single_face
    assert len(rec) == 72 and rec.num_valid == 72 and rec.topology == "mediapipe"
    assert rec.vertices.shape == (72, 468, 3)
    assert rec.crops.shape == (72, 112, 112, 3) and rec.crops.dtype == torch.uint8
    assert torch.allclose(torch.diff(rec.timestamps), torch.full((71,), 1 / 30, dtype=rec.timestamps.dtype), atol=1e-3)
    assert rec.fps == pytest.approx(30.0)
    # pose is a similarity: orthonormal rotation, positive scale (pixels per cm)
    eye = torch.eye(3).expand(72, 3, 3)
    assert torch.allclose(rec.rotation @ rec.rotation.transpose(1, 2), eye, atol=1e-4)
    assert torch.allclose(torch.linalg.det(rec.rotation), torch.ones(72), atol=1e-4)
    assert (rec.scale > 5).all() and (rec.scale < 30).all()
    # posing the canonical vertices gives the tracked pixel points back
    posed = rec.posed_vertices()
    assert torch.allclose(posed[:, IBUG68_TO_MEDIAPIPE, :2], rec.landmarks2d, atol=1e-2)
    reconstructor.reset()
    first = reconstructor.detect(single_face_frames[0].rgb)
    assert np.abs(posed[0].numpy() - first).max() < 0.05
    # canonical shape: close to the template, the face inside the frame
    template = torch.from_numpy(reconstructor.topology.template)
    assert (rec.vertices - template).norm(dim=-1).mean() < 1.5
    assert (rec.landmarks2d[..., 0] > 0).all() and (rec.landmarks2d[..., 0] < 640).all()


def test_crops_are_aligned(single_face: CoarseFrames, reconstructor: MediaPipeReconstructor) -> None:
    for i in (0, 40, 71):
        affine = reconstructor.crop_transform(
            float(single_face.scale[i]),
            single_face.rotation[i].double().numpy(),
            single_face.translation[i].double().numpy(),
        )
        lm = single_face.landmarks2d[i].double().numpy() @ affine[:, :2].T + affine[:, 2]
        left, right = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
        assert abs(left[1] - right[1]) < 3  # eyes level
        assert abs((left[0] + right[0]) / 2 - 55.5) < 6  # centred
        assert 25 < right[0] - left[0] < 60 and (lm >= 0).all() and (lm < 112).all()  # whole face inside
    assert single_face.crops.float().mean() > 40  # real image content, not black


def test_no_face_video_is_all_invalid_and_an_error(tmp_path: Path, reconstructor: MediaPipeReconstructor) -> None:
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, 160, dtype=np.uint8)[None, :, None].repeat(120, 0).repeat(3, 2)
    frames = [gradient if i % 2 else rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for i in range(12)]
    video = write_avi(tmp_path / "noface.avi", frames)
    chunks = []
    with pytest.raises(NoFaceError, match=r"no face found in any of the 12 frames"):
        for chunk in reconstruct_video(video, reconstructor, chunk_size=5):
            chunks.append(chunk)
    record = CoarseFrames.concat(chunks)
    assert len(record) == 12 and record.num_valid == 0
    assert record.vertices.abs().sum() == 0 and record.crops.sum() == 0 and record.scale.sum() == 0
    out = tmp_path / "noface.npz"
    with pytest.raises(NoFaceError, match="noface.avi"):
        reconstruct_video_to_file(video, reconstructor, out)
    assert not out.exists() and list(tmp_path.glob(".noface*")) == []
    summary = reconstruct_video_to_file(video, reconstructor, out, allow_no_face=True)
    assert summary.num_frames == 12 and summary.num_valid == 0 and CoarseFrames.load(out).num_valid == 0


def test_face_appearing_half_way(
    tmp_path: Path, reconstructor: MediaPipeReconstructor, single_face_frames: list
) -> None:
    blank = np.full((360, 640, 3), 90, np.uint8)
    video = write_avi(tmp_path / "late.avi", [blank] * 10 + [f.rgb for f in single_face_frames[:14]])
    out = tmp_path / "late.npz"
    summary = reconstruct_video_to_file(video, reconstructor, out, chunk_size=8)
    record = CoarseFrames.load(out)
    assert summary.num_frames == 24 and summary.num_valid == record.num_valid
    assert not record.valid[:10].any() and record.valid[11:].all()
    assert record.crops.shape == (24, 112, 112, 3)
    assert np.allclose(np.diff(record.timestamps.numpy()), 1 / 30, atol=1e-3)
    streamed = CoarseFrames.concat(list(reconstruct_video(video, reconstructor, chunk_size=5)))
    assert torch.equal(streamed.valid, record.valid)
    assert torch.allclose(streamed.vertices, record.vertices, atol=1e-4)


def test_rejects_bad_frames(reconstructor: MediaPipeReconstructor) -> None:
    from au_face.coarse.mediapipe import FrameFormatError

    with pytest.raises(FrameFormatError):
        reconstructor.reconstruct([np.zeros((10, 10), np.uint8)], [0.0], 30.0)
    with pytest.raises(FrameFormatError):
        reconstructor.reconstruct([np.zeros((10, 10, 3), np.uint8)], [], 30.0)


def _with_second_face(rgb: np.ndarray) -> np.ndarray:
    """The frame with a copy of itself at 3/4 size to its right: a second, smaller face (half size is
    too small for the detector)."""
    h, w = rgb.shape[:2]
    canvas = np.zeros((h, w + 3 * w // 4, 3), np.uint8)
    canvas[:, :w] = rgb
    canvas[: 3 * h // 4, w:] = cv2.resize(rgb, (3 * w // 4, 3 * h // 4))
    return canvas


def test_further_faces_are_looked_for_every_n_frames(single_face_frames: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """The face detector runs on frames 0, N, 2N, ... only; a face entering between two looks is
    tracked from the next look on, and the large face stays the chosen one."""
    from au_face.coarse import mediapipe as module
    from au_face.coarse.mediapipe import MultipleFacesWarning

    monkeypatch.setattr(module, "DETECT_EVERY", 10)
    rgb = [f.rgb for f in single_face_frames[:25]]
    alone = [_with_second_face(np.zeros_like(f)) for f in rgb[:12]]
    for i, f in enumerate(rgb[:12]):
        alone[i][:, : f.shape[1]] = f
    frames = alone + [_with_second_face(f) for f in rgb[12:]]  # the small face enters at frame 12
    reconstructor = MediaPipeReconstructor(crop_size=0)
    looked: list[int] = []
    count = reconstructor.count_faces
    monkeypatch.setattr(reconstructor, "count_faces", lambda image: looked.append(count(image)) or looked[-1])
    with pytest.warns(MultipleFacesWarning, match="2 faces in view"):
        out = reconstructor.reconstruct(frames, [i / 30 for i in range(25)], 30.0)
    assert looked == [1, 1, 2]  # frames 0, 10 and 20: the new face is found at the first look after it entered
    assert reconstructor._mesh_faces == 2 and out.num_valid == 25
    centres = out.posed_vertices()[:, :, 0].mean(dim=1)
    assert (centres < rgb[0].shape[1]).all()  # the large face, every frame
    reconstructor.close()


def test_looking_for_faces_less_often_changes_no_mesh(single_face_frames: list) -> None:
    """One face in view: tracking up to 4 faces gives the meshes of tracking one (no detector run per frame)."""
    rgb = [f.rgb for f in single_face_frames[:40]]
    times = [i / 30 for i in range(40)]
    several, one = MediaPipeReconstructor(crop_size=0), MediaPipeReconstructor(crop_size=0, max_faces=1)
    a, b = several.reconstruct(rgb, times, 30.0), one.reconstruct(rgb, times, 30.0)
    assert a.num_valid == b.num_valid == 40 and several._mesh_faces == 1
    assert torch.equal(a.vertices, b.vertices) and torch.equal(a.translation, b.translation)
    several.close()
    one.close()


# ----------------------------------------------------------------------------------- small faces
def _pasted(rgb: np.ndarray, scale: float, x: int, y: int, size: tuple[int, int] = (720, 1280)) -> np.ndarray:
    """``rgb`` shrunk by ``scale`` with its top left at (x, y) on a grey ``size`` frame."""
    canvas = np.full((*size, 3), 100, np.uint8)
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    return canvas


@pytest.mark.parametrize(
    "size", [(720, 1280), (360, 640), (1080, 1920), (1280, 720), (600, 601), (200, 900), (10, 2000)]
)
def test_tiles_hold_every_face_up_to_half_a_tile(size: tuple[int, int]) -> None:
    from au_face.coarse.mediapipe import tiles

    height, width = size
    found = tiles(height, width)
    side = min(400, height, width)
    if side < 128 or max(height, width) < 1.5 * side:
        assert found == []
        return
    assert found and all(s == side and 0 <= x <= width - s and 0 <= y <= height - s for x, y, s in found)
    half = side // 2
    for top in range(0, height - half + 1, 7):
        for left in range(0, width - half + 1, 7):  # every square of half a side lies whole in a tile
            assert any(x <= left and left + half <= x + s and y <= top and top + half <= y + s for x, y, s in found)


def test_small_face_in_a_large_photo_is_found_in_tiles(video_dir: Path) -> None:
    """A face 46 px wide in a 1280×720 photo: Face Mesh alone sees none; the tiles find it, with the
    points of the same face photographed large, shrunk."""
    from au_face.faces.mediapipe import require_face_mesh

    photo = cv2.cvtColor(cv2.imread(str(video_dir / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    scale, x, y = 0.25, 900, 400
    frame = _pasted(photo, scale, x, y)
    with require_face_mesh().FaceMesh(static_image_mode=True) as face_mesh:
        assert face_mesh.process(frame).multi_face_landmarks is None
    reconstructor = MediaPipeReconstructor()
    large, small = reconstructor.reconstruct_still(photo, 30.0), reconstructor.reconstruct_still(frame, 30.0)
    assert small["valid"].tolist() == [True] and large["valid"].tolist() == [True]
    expected = large["landmarks2d"][0] * scale + np.array([x, y])
    assert np.ptp(expected[:, 0]) > 40
    assert float(np.abs(small["landmarks2d"][0] - expected).mean()) < 1.5  # pixels
    reconstructor.close()


def test_a_small_face_in_a_photo_is_looked_at_again_up_close(video_dir: Path, topology: FaceTopology) -> None:
    """A face 130 px wide in a 1280×720 photo: Face Mesh finds it in the whole photo but places its points
    from its detector's coarse box, pixels off; the second look, in a square around it, places them as
    on the large photo."""
    from au_face.faces.mediapipe import landmark_points, require_face_mesh

    photo = cv2.cvtColor(cv2.imread(str(video_dir / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    reconstructor = MediaPipeReconstructor(crop_size=0)
    large = reconstructor.reconstruct_still(photo, 30.0)["landmarks2d"][0]
    scale = 130 / float(np.ptp(large[:, 0]))
    first_errors, closer_errors = [], []
    with require_face_mesh().FaceMesh(static_image_mode=True) as face_mesh:
        for x, y in ((100, 100), (600, 300), (300, 200)):
            frame = _pasted(photo, scale, x, y)
            expected = large * scale + np.array([x, y])
            (face,) = face_mesh.process(frame).multi_face_landmarks
            first = landmark_points(face)[topology.landmarks68, :2] * np.array([1280, 720])
            closer = reconstructor.reconstruct_still(frame, 30.0)["landmarks2d"][0]
            first_errors.append(float(np.linalg.norm(first - expected, axis=-1).mean()))
            closer_errors.append(float(np.linalg.norm(closer - expected, axis=-1).mean()))
    assert max(closer_errors) < 1.5 and np.mean(first_errors) > 3 * np.mean(closer_errors), (
        first_errors,
        closer_errors,
    )
    reconstructor.close()


def test_tracking_starts_from_the_closer_look(video_dir: Path) -> None:
    """Face Mesh tracks on from its own coarse first points: the frame after a face 100 px wide is first
    seen was 4.9 px off. Until the tracker agrees with the closer look, the closer look's points are used."""
    photo = cv2.cvtColor(cv2.imread(str(video_dir / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    large = MediaPipeReconstructor(crop_size=0).reconstruct_still(photo, 30.0)["landmarks2d"][0]
    scale = 100 / float(np.ptp(large[:, 0]))
    frame = _pasted(photo, scale, 300, 200)
    out = MediaPipeReconstructor(crop_size=0).reconstruct([frame] * 6, [i / 30 for i in range(6)], 30.0)
    expected = large * scale + np.array([300, 200])
    errors = np.linalg.norm(out.landmarks2d.numpy() - expected, axis=-1).mean(axis=-1)
    assert out.num_valid == 6 and errors.max() < 1.5, errors


def test_small_face_in_a_video_is_followed(single_face_frames: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """A face 55 px wide moving across a 1280×720 video: found in the tiles once, then followed, every
    frame valid, with the canonical meshes of the same video at full size."""
    from au_face.coarse import mediapipe as module

    searches: list[int] = []
    tiles = module.tiles
    monkeypatch.setattr(module, "tiles", lambda *size: searches.append(1) or tiles(*size))
    rgb = [f.rgb for f in single_face_frames[:40]]
    moving = [_pasted(f, 0.3, 200 + 4 * i, 300 + 2 * i) for i, f in enumerate(rgb)]
    times = [i / 30 for i in range(40)]
    small = MediaPipeReconstructor(crop_size=0).reconstruct(moving, times, 30.0)
    large = MediaPipeReconstructor(crop_size=0).reconstruct(rgb, times, 30.0)
    assert small.num_valid == large.num_valid == 40 and len(searches) == 1
    assert float((small.vertices - large.vertices).abs().mean()) < 0.1  # template units (cm)


def test_a_face_that_comes_and_goes_is_searched_for_once_in_n_frames(
    single_face_frames: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    from au_face.coarse import mediapipe as module

    searched: list[int] = []
    tiles = module.tiles
    monkeypatch.setattr(module, "tiles", lambda *size: searched.append(1) or tiles(*size))
    blank = np.full((360, 640, 3), 90, np.uint8)
    frames = [f.rgb if i % 2 == 0 else blank for i, f in enumerate(single_face_frames[:40])]
    out = MediaPipeReconstructor(crop_size=0).reconstruct(frames, [i / 30 for i in range(40)], 30.0)
    assert out.num_valid == 20 and len(searched) == 2  # frames 1 and 31, not every blank frame


def test_frames_without_a_face_search_the_tiles_every_n_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    from au_face.coarse import mediapipe as module

    searched: list[int] = []
    tiles = module.tiles
    monkeypatch.setattr(module, "tiles", lambda *size: searched.append(len(searched)) or tiles(*size))
    blank = np.full((720, 1280, 3), 90, np.uint8)
    out = MediaPipeReconstructor(crop_size=0).reconstruct([blank] * 65, [i / 30 for i in range(65)], 30.0)
    assert out.num_valid == 0 and len(searched) == 3  # frames 0, 30 and 60 (DETECT_EVERY)


def test_landmark_points_reads_the_serialised_list_exactly_and_falls_back_on_other_layouts() -> None:
    from mediapipe.framework.formats import landmark_pb2

    from au_face.faces.mediapipe import landmark_points

    rng = np.random.default_rng(0)
    values = rng.normal(size=(468, 3)).astype(np.float32)
    values[5] = 0.0  # zeros are still written (proto2 fields that are set)
    landmarks = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in values:
        landmarks.landmark.add(x=float(x), y=float(y), z=float(z))
    expected = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float64)
    points = landmark_points(landmarks)
    assert points.dtype == np.float64 and points.shape == (468, 3)
    np.testing.assert_array_equal(points, expected)
    # a landmark with visibility (another field) or without z takes the field-by-field path
    landmarks.landmark[3].visibility = 0.5
    np.testing.assert_array_equal(landmark_points(landmarks), expected)
    partial = landmark_pb2.NormalizedLandmarkList()
    partial.landmark.add(x=0.25, y=0.5)
    np.testing.assert_array_equal(landmark_points(partial), [[0.25, 0.5, 0.0]])
