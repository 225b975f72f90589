"""Multiface captures: tracked meshes as ground truth for reconstruction error (and timing clips).

Layout of one capture (facebookresearch/multiface ``documentation/DATA_STRUCTURE.md``)::

    m--20180227--0000--6795937--GHS/
      images/<segment>/<camera>/000102.png ...      frames of each camera (file name = frame number)
      tracked_mesh/<segment>/000102.bin             float32 vertices [7306,3] in the head frame
      tracked_mesh/<segment>/000102_transform.txt   3x4 head pose (head → world)
      KRT, frame_list.txt, ...

The ``.bin`` meshes are in the head frame (the repository's ``dataset.py`` applies the head pose
only to move cameras into that frame), like the canonical vertices of :class:`CoarseFrames`.
The evaluation segments are those starting with ``EXP_ROM`` and ``EXP_free_face`` (the
repository's ``test_segment.json``).

Ground truth in the coarse topology: the mean coarse mesh S̄ of a video is registered to the
mean tracked mesh of the same frames by a similarity ICP (trimmed, several initial rotations);
each coarse vertex takes its nearest tracked vertex, whose track over the frames, mapped back
by the inverse similarity, is the ground truth (coarse units). The result is cached beside the
coarse cache. ``au-face preprocess`` reads videos: encode ``images/<segment>/<camera>`` first
(:func:`au_face.data.datamodules.cached.encode_image_folder`, 30 fps).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from au_face.coarse.base import CoarseFrames
from au_face.data.clips import SequenceRecord
from au_face.data.datamodules.base import count_frames
from au_face.data.datamodules.cached import (
    CachedVideoDataModule,
    DatasetLayoutError,
    VideoSequence,
    image_frame_numbers,
)
from au_face.faces.align import similarity
from au_face.utils.files import atomic_save_npz

#: Segment prefixes of the Multiface evaluation set (``test_segment.json``).
MULTIFACE_TEST_SEGMENTS = ("EXP_ROM", "EXP_free_face")
#: Capture rate of the Multiface cameras.
MULTIFACE_FPS = 30.0


def read_tracked_mesh(path: str | Path) -> np.ndarray:
    """A Multiface ``tracked_mesh/<segment>/<frame>.bin``: float32 vertices ``[V,3]``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"Multiface tracked mesh not found: {path}")
    data = np.fromfile(path, dtype=np.float32)
    if data.size == 0 or data.size % 3:
        raise DatasetLayoutError(f"{path}: {data.size} floats is not a list of 3-D vertices")
    return data.reshape(-1, 3)


def _spread(points: np.ndarray) -> float:
    return float(np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean()))


def register_similarity(
    source: np.ndarray, target: np.ndarray, iterations: int = 40, keep: float = 0.9
) -> tuple[float, np.ndarray, np.ndarray, float]:
    """Similarity ``(s, R, t)`` moving point set ``source`` onto the surface samples ``target``.

    Trimmed ICP (the worst ``1 - keep`` of the pairs are ignored, as ``target`` may cover more of
    the head than ``source``) from the identity and the three half-turns about the axes, scale and
    translation initialised from the spreads and centroids. Returns the best one and its mean
    nearest-neighbour distance (target units).
    """
    tree = cKDTree(target)
    fits = []
    for axis in (None, "x", "y", "z"):
        rotation = np.eye(3) if axis is None else Rotation.from_euler(axis, 180, degrees=True).as_matrix()
        scale = _spread(target) / _spread(source)
        shift = target.mean(0) - scale * rotation @ source.mean(0)
        for _ in range(iterations):
            distance, index = tree.query(scale * source @ rotation.T + shift)
            inliers = distance <= np.quantile(distance, keep)
            scale, rotation, shift = similarity(source[inliers], target[index[inliers]])
        residual = float(tree.query(scale * source @ rotation.T + shift)[0].mean())
        fits.append((scale, rotation, shift, residual))
    return min(fits, key=lambda fit: fit[3])  # the first of equal residuals, as before


def ground_truth_in_coarse_topology(coarse: CoarseFrames, meshes: np.ndarray) -> tuple[np.ndarray, float]:
    """Tracked meshes ``[T,Vm,3]`` as ``[T,V,3]`` ground truth in the coarse frame; and the fit residual (coarse units)."""
    reference = coarse.mean_shape().numpy().astype(np.float64)
    target = meshes.mean(0).astype(np.float64)
    scale, rotation, shift, residual = register_similarity(reference, target)
    nearest = cKDTree(target).query(scale * reference @ rotation.T + shift)[1]
    gt = (meshes[:, nearest].astype(np.float64) - shift) @ rotation / scale
    return gt.astype(np.float32), residual / scale


class MultifaceDataModule(CachedVideoDataModule):
    """Segments of a Multiface capture seen by chosen cameras, with ground-truth meshes (no AU labels).

    Args:
        capture_dir: the capture folder (``m--<date>--<time>--<id>--GHS``); default cache ``--base``.
        cache_dir: the coarse cache of the videos.
        cameras: camera ids to use (one video per segment and camera).
        video_dir: the encoded videos (default ``<capture_dir>/videos``).
        video_template: a video's path in ``video_dir`` from ``{segment}`` and ``{camera}``.
        test_segments: segment-name prefixes of the evaluation split (val/test/predict).
        segments: segments to use (default: every folder of ``tracked_mesh``).
        Other arguments: see :class:`CachedVideoDataModule` (the AU list only sizes the model).
    """

    def __init__(
        self,
        capture_dir: str,
        cache_dir: str,
        cameras: list[str] | None = None,
        video_dir: str | None = None,
        video_template: str = "{segment}/{camera}.avi",
        test_segments: list[str] | None = None,
        segments: list[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(cache_dir, **kwargs)
        self.capture_dir = Path(capture_dir)
        self.cameras = list(cameras) if cameras is not None else ["400002"]
        self.video_dir = Path(video_dir) if video_dir is not None else self.capture_dir / "videos"
        self.video_template = video_template
        self.test_segments = tuple(test_segments) if test_segments is not None else MULTIFACE_TEST_SEGMENTS
        self.segment_names = segments

    @property
    def root(self) -> Path:
        return self.capture_dir

    @property
    def subject(self) -> str:
        """The capture's identity id (``m--20180227--0000--6795937--GHS`` → ``6795937``)."""
        parts = self.capture_dir.name.split("--")
        return parts[3] if len(parts) >= 4 else self.capture_dir.name

    def _segments(self) -> list[str]:
        mesh_root = self.capture_dir / "tracked_mesh"
        if not mesh_root.is_dir():
            raise DatasetLayoutError(f"not a Multiface capture: {mesh_root} does not exist")
        available = sorted(p.name for p in mesh_root.iterdir() if p.is_dir())
        if self.segment_names is None:
            return available
        unknown = sorted(set(self.segment_names) - set(available))
        if unknown:
            raise DatasetLayoutError(f"segments {unknown} are not in {mesh_root}")
        return list(self.segment_names)

    def list_sequences(self, split: str) -> list[VideoSequence]:
        is_test = split != "train"
        out = []
        for segment in self._segments():
            if segment.startswith(self.test_segments) != is_test:
                continue
            for camera in self.cameras:
                frames = image_frame_numbers(self.capture_dir / "images" / segment / camera)
                video = self.video_dir / self.video_template.format(segment=segment, camera=camera)
                out.append(VideoSequence(f"{segment}/{camera}", self.subject, video, frame_numbers=frames))
        return out

    def _record(self, seq: VideoSequence) -> SequenceRecord:
        record = super()._record(seq)
        n = count_frames(record)
        labels = np.full((n, len(self.aus)), -1, dtype=np.int8)
        return replace(record, labels=labels, gt_path=self._ground_truth(seq, record.coarse_path, n))

    def _ground_truth(self, seq: VideoSequence, coarse_path: Path, n: int) -> Path:
        """The cached ground truth of a video, (re)computed when missing or older than its coarse record."""
        path = self.cache_dir / "multiface_gt" / f"{self.cache.key(seq.video)}.npz"
        stamp = coarse_path.stat().st_mtime_ns
        if path.is_file():
            with np.load(path) as z:
                if int(z["coarse_mtime_ns"]) == stamp:
                    return path
        frames = np.asarray(seq.frame_numbers)[:: self.frame_stride][:n]
        if frames.size != n:
            raise DatasetLayoutError(f"{seq.name}: the cache has {n} frames but the image folder {frames.size}")
        segment = seq.name.split("/")[0]
        meshes = np.stack(
            [read_tracked_mesh(self.capture_dir / "tracked_mesh" / segment / f"{f:06d}.bin") for f in frames]
        )
        gt, residual = ground_truth_in_coarse_topology(CoarseFrames.load(coarse_path), meshes)
        atomic_save_npz(
            path,
            vertices=gt,
            frames=frames,
            residual=np.array(residual, dtype=np.float32),
            coarse_mtime_ns=np.array(stamp, dtype=np.int64),
        )
        return path
