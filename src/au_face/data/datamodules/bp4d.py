"""BP4D-Spontaneous: 41 subjects x 8 tasks, AU occurrence (BP4D-12), subject-independent 3 folds.

Layout (label facts: :func:`au_face.data.labels.read_bp4d`)::

    <root>/AUCoding/AU_OCC/F001_T1.csv ...     AU occurrence per subject and task
    <images_dir>/F001/T1/0001.jpg ...           the released frames (file name = frame number)
    <video_dir>/F001/T1.avi ...                 those frames as videos, for ``au-face preprocess``

BP4D is released as JPEG frames; ``au-face preprocess`` reads videos, so encode each task folder
first (:func:`au_face.data.datamodules.cached.encode_image_folder`, 25 fps). Label frame numbers
are matched to video frames through the image file numbers of ``images_dir`` (or, without the
frames, ``frame_offset``: the frame number of each video's first frame).
"""

from __future__ import annotations

from pathlib import Path

from au_face.data.datamodules.cached import (
    CachedVideoDataModule,
    DatasetLayoutError,
    VideoSequence,
    image_frame_numbers,
)
from au_face.data.folds import fold_splits
from au_face.data.labels import MissingLabelsError, bp4d_label_path, read_bp4d

BP4D_TASKS = ("T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8")
#: frame rate of the BP4D 2D video (Zhang et al., IVC 2014): use it when encoding the frames.
BP4D_FPS = 25.0


class BP4DDataModule(CachedVideoDataModule):
    """BP4D fold ``fold`` (1-3) of the JAA-Net/ME-GraphAU protocol; validation = test fold unless ``val_subjects``.

    Args:
        root: the BP4D folder (holding ``AUCoding/AU_OCC``); also the default cache ``--base``.
        cache_dir: the coarse cache of the videos.
        fold: 1, 2 or 3 (see ``au_face/resources/folds/bp4d.json``).
        video_dir: folder of the encoded videos (default ``<root>/videos``).
        video_template: a video's path in ``video_dir`` from ``{subject}`` and ``{task}``.
        images_dir: folder of the released frames ``<subject>/<task>/<frame>.jpg`` the videos were made from.
        frame_offset: without ``images_dir``, the frame number of every video's first frame.
        label_dir: the ``AU_OCC`` folder (default ``<root>/AUCoding/AU_OCC``).
        tasks: tasks to use. val_subjects: training subjects held out for validation.
        Other arguments: see :class:`CachedVideoDataModule`.
    """

    def __init__(
        self,
        root: str,
        cache_dir: str,
        fold: int = 1,
        video_dir: str | None = None,
        video_template: str = "{subject}/{task}.avi",
        images_dir: str | None = None,
        frame_offset: int | None = None,
        label_dir: str | None = None,
        tasks: list[str] | None = None,
        val_subjects: list[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(cache_dir, **kwargs)
        self.dataset_root = Path(root)
        self.fold = fold
        self.splits = fold_splits("bp4d", fold, val_subjects)
        self.video_dir = Path(video_dir) if video_dir is not None else self.dataset_root / "videos"
        self.video_template = video_template
        self.images_dir = Path(images_dir) if images_dir is not None else None
        self.frame_offset = frame_offset
        self.label_dir = Path(label_dir) if label_dir is not None else self.dataset_root / "AUCoding" / "AU_OCC"
        self.tasks = list(tasks) if tasks is not None else list(BP4D_TASKS)
        if self.images_dir is None and self.frame_offset is None:
            raise DatasetLayoutError(
                "BP4DDataModule needs images_dir (the frame folders the videos were encoded from) "
                "or frame_offset (the frame number of each video's first frame)"
            )

    @property
    def root(self) -> Path:
        return self.dataset_root

    def list_sequences(self, split: str) -> list[VideoSequence]:
        if not self.label_dir.is_dir():
            raise MissingLabelsError(f"BP4D AU labels not found: expected the AU_OCC folder at {self.label_dir}")
        out = []
        for subject in self.splits[split]:
            for task in self.tasks:
                track = read_bp4d(bp4d_label_path(self.label_dir, subject, task), self.aus)
                video = self.video_dir / self.video_template.format(subject=subject, task=task)
                numbers = None
                if self.images_dir is not None:
                    numbers = image_frame_numbers(self.images_dir / subject / task)
                out.append(VideoSequence(f"{subject}_{task}", subject, video, track, self.frame_offset or 0, numbers))
        return out
