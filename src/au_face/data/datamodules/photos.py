"""Expression-labelled photo collections: one-frame items with weak AU labels from the expression.

A collection is a folder with a CSV of ``image,emotion`` rows (other columns are ignored), image
paths relative to an image folder. ``muxspace/facial_expressions`` (Apache-2.0) is this layout with
``data/legend.csv`` (``user.id,image,emotion``) and ``images/``; its quirks are handled here:
expressions in any case (``HAPPINESS``), rows repeated verbatim (kept once) and an image listed
with two different expressions (dropped, and named in :attr:`PhotoTable.conflicts`).

* **The reserved quarter.** Photos whose SHA-1 hex digest of the file name as written in the CSV
  (UTF-8) ends in ``c``, ``d``, ``e`` or ``f`` (:func:`is_reserved`) are never served for training
  or validation; they are measured apart (``benchmarks/bench_expressions.py --split reserved``).
* **Train and validation** come from the rest, split by person (:func:`person_of`: LFW-style
  ``First_Last_0004.jpg`` -> ``First_Last``), stratified by each person's rarest expression.
* **Items.** Each photo is a one-frame sequence from the coarse cache; S̄ is fitted to that photo
  (``reference='neutral'``); its labels are :func:`~au_face.aus.weak_au_labels` of its expression,
  and with ``lips_part_from_mesh`` AU25 where the expression leaves it unknown is read from the
  photo's mesh (:func:`~au_face.data.lips.fill_lips_part`); with ``lip_press_from_mesh`` AU24 is 0
  where the mesh shows the lips parted (:func:`~au_face.data.lips.clear_lip_press`). With
  ``person_reference``, a share of the training items of a person with several photos takes S̄
  fitted over that person's photos, as in video (:meth:`ExpressionPhotoDataModule.person_references`).
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from au_face.aus import (
    EXPRESSIONS,
    UnknownExpressionError,
    parse_expression,
    weak_au_labels,
)
from au_face.coarse.base import CoarseFrames
from au_face.data.clips import ClipDataset, SequenceRecord
from au_face.data.datamodules.cached import (
    STAGE_SPLITS,
    CachedVideoDataModule,
    DatasetLayoutError,
    VideoSequence,
)
from au_face.data.labels import LabelTrack
from au_face.data.lips import clear_lip_press, fill_lips_part

#: Last hex digits of SHA-1(file name) that put a photo in the reserved quarter.
RESERVED_DIGITS = "cdef"
#: ``<person>_<number>.<ext>``: LFW (``First_Last_0004.jpg``) and similar collections.
_PERSON = re.compile(r"^(?P<person>.+?)_\d+$")


def is_reserved(name: str) -> bool:
    """Whether the photo named ``name`` (as written in the CSV) is in the reserved quarter."""
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[-1] in RESERVED_DIGITS


def person_of(name: str) -> str:
    """The person a photo shows, from its file name: ``First_Last_0004.jpg`` -> ``First_Last``;
    a name without a trailing ``_<number>`` is its own person."""
    stem = Path(name).stem
    match = _PERSON.match(stem)
    return match.group("person") if match else stem


@dataclass(frozen=True)
class Photo:
    """One labelled photo: ``image`` as written in the CSV, canonical ``expression``, ``person``."""

    image: str
    expression: str
    person: str


@dataclass
class PhotoTable:
    """The photos of a CSV, each once, and what was set aside while reading it.

    Attributes:
        photos: in CSV order of first appearance.
        conflicts: images listed with different expressions (dropped), with those expressions.
        repeated: rows that repeated an earlier row's image and expression (dropped).
    """

    photos: list[Photo]
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    repeated: int = 0


def read_expression_csv(path: str | Path, image_column: str = "image", emotion_column: str = "emotion") -> PhotoTable:
    """Read an expression CSV (:class:`PhotoTable`); a missing column or an unknown expression is a
    :class:`DatasetLayoutError` naming the line."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [c for c in (image_column, emotion_column) if c not in columns]
            if missing:
                raise DatasetLayoutError(
                    f"{path}: no column {', '.join(map(repr, missing))} (columns: {', '.join(columns)})"
                )
            labels: dict[str, list[str]] = {}
            repeated = 0
            for line, row in enumerate(reader, start=2):
                image = (row[image_column] or "").strip()
                if not image:
                    raise DatasetLayoutError(f"{path}:{line}: empty {image_column!r}")
                try:
                    expression = parse_expression(row[emotion_column] or "")
                except UnknownExpressionError as err:
                    raise DatasetLayoutError(f"{path}:{line}: {err}") from err
                seen = labels.setdefault(image, [])
                if expression in seen:
                    repeated += 1
                else:
                    seen.append(expression)
    except OSError as err:
        raise DatasetLayoutError(f"cannot read {path}: {err.strerror or err}") from err
    photos = [Photo(image, found[0], person_of(image)) for image, found in labels.items() if len(found) == 1]
    conflicts = {image: found for image, found in labels.items() if len(found) > 1}
    return PhotoTable(photos, conflicts, repeated)


def split_photos(photos: list[Photo], val_fraction: float) -> dict[str, list[Photo]]:
    """``train`` / ``val`` from the unreserved photos and ``reserved``, split by person.

    Persons are grouped by their rarest expression (over the collection); within a group, persons
    go to validation in SHA-1 order of their names until the group's validation photos of that
    expression reach ``val_fraction`` (a group's last person always trains). So every expression
    is in both splits where the persons allow, the split is the same every time, and no person is
    in both.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetLayoutError(f"val_fraction must be in (0, 1), got {val_fraction}")
    usable = [p for p in photos if not is_reserved(p.image)]
    frequency = Counter(p.expression for p in usable)
    by_person: dict[str, list[Photo]] = {}
    for photo in usable:
        by_person.setdefault(photo.person, []).append(photo)
    groups: dict[str, list[str]] = {}
    for person, own in by_person.items():
        rarest = min({p.expression for p in own}, key=lambda e: (frequency[e], e))
        groups.setdefault(rarest, []).append(person)
    val_persons: set[str] = set()
    for rarest, persons in groups.items():
        total = sum(1 for person in persons for p in by_person[person] if p.expression == rarest)
        ordered = sorted(persons, key=lambda s: hashlib.sha1(s.encode("utf-8")).hexdigest())
        taken = 0
        for person in ordered[: len(ordered) - 1]:  # the last person always trains
            if taken >= val_fraction * total:
                break
            val_persons.add(person)
            taken += sum(1 for p in by_person[person] if p.expression == rarest)
    return {
        "train": [p for p in usable if p.person not in val_persons],
        "val": [p for p in usable if p.person in val_persons],
        "reserved": [p for p in photos if is_reserved(p.image)],
    }


def cap_per_expression(photos: list[Photo], limit: int | None) -> list[Photo]:
    """At most ``limit`` photos of each expression: the first in SHA-1 order of their names, kept in
    their original order (None: all)."""
    if limit is None:
        return photos
    kept: set[str] = set()
    for expression in {p.expression for p in photos}:
        own = sorted(
            (p.image for p in photos if p.expression == expression),
            key=lambda n: hashlib.sha1(n.encode("utf-8")).hexdigest(),
        )
        kept.update(own[:limit])
    return [p for p in photos if p.image in kept]


class ExpressionPhotoDataModule(CachedVideoDataModule):
    """An expression-labelled photo collection as one-frame items with weak AU labels.

    ``test`` and ``predict`` serve the validation photos: the reserved quarter is never served.
    ``prepare_data`` reconstructs the photos the cache lacks (a single process; also
    ``python -m au_face.data.datamodules.photos``). Photos without a face are left out.

    Args:
        root: the collection folder.
        cache_dir: the coarse cache of its photos (keys relative to ``root``).
        csv: the expression CSV, relative to ``root`` (``data/legend.csv`` for facial_expressions).
        image_dir: folder the CSV's image names are relative to, relative to ``root``.
        image_column, emotion_column: the CSV's columns.
        val_fraction: share of each expression's photos (by person) for validation.
        max_train_per_expression: train on at most this many photos of each expression (the
            first in SHA-1 order of their names; None: all). Validation is never capped.
        lips_part_from_mesh: where the expression leaves AU25 unknown, label it from the inner-lip
            gap of the photo's cached mesh (:mod:`au_face.data.lips`).
        lip_press_from_mesh: label AU24 (Lip Pressor) absent where that gap shows the lips parted,
            even where the expression lists it (an angry face shouting).
        person_reference: share of the training items of a person with two or more training photos
            whose S̄ is fitted over all of that person's photos (:meth:`person_references`), as a
            video's S̄ is fitted over its frames, instead of to the photo alone. A photo's own S̄ takes
            up what the expression shapes cannot express, so the network would see a real face's
            change from its person's neutral (as in video) only this way.
        Other arguments: see :class:`CachedVideoDataModule` (``reference`` must be ``neutral``).
    """

    def __init__(
        self,
        root: str,
        cache_dir: str,
        csv: str = "data/legend.csv",
        image_dir: str = "images",
        image_column: str = "image",
        emotion_column: str = "emotion",
        val_fraction: float = 0.2,
        max_train_per_expression: int | None = None,
        lips_part_from_mesh: bool = False,
        lip_press_from_mesh: bool = False,
        person_reference: float = 0.0,
        **kwargs,
    ) -> None:
        kwargs.setdefault("reference", "neutral")
        kwargs.setdefault("use_crops", False)
        super().__init__(cache_dir, **kwargs)
        if self.reference != "neutral":
            raise DatasetLayoutError(
                "photos need reference='neutral' (S̄ fitted to each photo); the mean of one frame is the frame"
            )
        self._root = Path(root)
        self.csv_path = self._root / csv
        self.image_dir = self._root / image_dir
        self.image_column, self.emotion_column = image_column, emotion_column
        self.val_fraction = val_fraction
        self.max_train_per_expression = max_train_per_expression
        self.lips_part_from_mesh = lips_part_from_mesh
        self.lip_press_from_mesh = lip_press_from_mesh
        if not 0.0 <= person_reference <= 1.0:
            raise ValueError(f"person_reference is a share of training items in [0, 1], got {person_reference}")
        self.person_reference = person_reference

    @property
    def root(self) -> Path:
        return self._root

    @cached_property
    def table(self) -> PhotoTable:
        return read_expression_csv(self.csv_path, self.image_column, self.emotion_column)

    @cached_property
    def splits(self) -> dict[str, list[Photo]]:
        """``train``, ``val`` and ``reserved`` photos (:func:`split_photos`), train capped per expression."""
        splits = split_photos(self.table.photos, self.val_fraction)
        return {**splits, "train": cap_per_expression(splits["train"], self.max_train_per_expression)}

    def photos(self, split: str) -> list[Photo]:
        """The photos of a split; ``test`` and ``predict`` are the validation photos."""
        return self.splits["val" if split in ("test", "predict") else split]

    def image_path(self, photo: Photo) -> Path:
        return self.image_dir / photo.image

    def list_sequences(self, split: str) -> list[VideoSequence]:
        if split == "reserved":
            raise DatasetLayoutError("the reserved quarter is never served by the DataModule")
        out = []
        for photo in self.photos(split):
            labels = np.array([weak_au_labels(photo.expression, self.aus)], dtype=np.int8)
            track = LabelTrack(np.zeros(1, np.int64), labels, self.aus, source=photo.image)
            out.append(VideoSequence(photo.image, photo.person, self.image_path(photo), track))
        return out

    def records(self, split: str) -> list[SequenceRecord]:
        """The split's photos that have a face in the cache (AU25 and AU24 labels from the mesh as asked)."""
        if split not in self._records:
            manifest = self.cache.manifest()
            records = super().records(split)
            records = [
                r for r, s in zip(records, self.sequences(split))
                if self.cache.has_face(s.video, manifest)
            ]  # fmt: skip
            from_mesh = self.lips_part_from_mesh or self.lip_press_from_mesh
            self._records[split] = [self._with_lip_labels(r) for r in records] if from_mesh else records
        return self._records[split]

    def _with_lip_labels(self, record: SequenceRecord) -> SequenceRecord:
        if record.labels is None:
            return record
        vertices = CoarseFrames.load(record.coarse_path).vertices.numpy()
        labels, landmarks68 = record.labels, self.geometry.topology.landmarks68
        if self.lips_part_from_mesh:
            labels = fill_lips_part(labels, self.aus, vertices, landmarks68)
        if self.lip_press_from_mesh:
            labels = clear_lip_press(labels, self.aus, vertices, landmarks68)
        return replace(record, labels=labels)

    def person_references(self, split: str) -> dict[int, torch.Tensor]:
        """S̄ ``[V,3]`` fitted over all photos of each person with two or more photos (with a face) in
        ``split``, for each of those photos by its index in :meth:`records`."""
        neutral = self.geometry.neutral
        if neutral is None:
            raise DatasetLayoutError("person_reference needs a geometry with a neutral estimator (the ICT model)")
        groups: dict[str, list[int]] = {}
        for i, record in enumerate(self.records(split)):
            groups.setdefault(record.subject, []).append(i)
        references: dict[int, torch.Tensor] = {}
        for members in groups.values():
            if len(members) < 2:
                continue
            frames = [CoarseFrames.load(self.records(split)[i].coarse_path) for i in members]
            vertices = torch.cat([f.vertices for f in frames]).float()
            reference = neutral(vertices, torch.cat([f.valid for f in frames])).float()
            references.update(dict.fromkeys(members, reference))
        return references

    def make_dataset(self, split: str) -> ClipDataset:
        dataset = super().make_dataset(split)
        if split == "train" and self.person_reference > 0:
            dataset.share_references(self.person_references(split), self.person_reference)
        return dataset

    def expressions(self, split: str) -> list[str]:
        """The expression of each of :meth:`records`' photos, in their order."""
        by_image = {p.image: p.expression for p in self.photos(split)}
        return [by_image[r.name] for r in self.records(split)]

    def prepare_data(self, splits: tuple[str, ...] = ("train", "val")) -> None:
        """Reconstruct the photos of ``splits`` that the cache lacks."""
        from au_face.coarse.registry import build_reconstructor
        from au_face.data.preprocess import fill_cache

        videos = [self.image_path(p) for split in splits for p in self.photos(split)]
        if self.cache.missing(videos):
            fill_cache(self.cache, build_reconstructor(self.reconstructor, appearance=self.appearance), videos)

    def setup(self, stage: str | None = None) -> None:
        for split in STAGE_SPLITS.get(stage, ()) if stage else ():
            if split in self.datasets:
                continue
            if not self.records(split):
                raise DatasetLayoutError(
                    f"{type(self).__name__}: no {split} photo of {self.csv_path} has a face in {self.cache_dir}"
                )
        super().setup(stage)


def expression_counts(photos: list[Photo]) -> dict[str, int]:
    """Photos per expression, in :data:`~au_face.aus.EXPRESSIONS` order."""
    counts = Counter(p.expression for p in photos)
    return {e: counts[e] for e in EXPRESSIONS if counts[e]}


def main(argv: list[str] | None = None) -> int:
    """``python -m au_face.data.datamodules.photos ROOT --cache DIR``: fill the coarse cache of a collection."""
    import argparse
    import sys
    import time

    from au_face.coarse.registry import (
        RECONSTRUCTORS,
        build_reconstructor,
        reconstructor_version,
    )
    from au_face.data.cache import CoarseCache
    from au_face.data.preprocess import fill_cache
    from au_face.errors import AUFaceError

    parser = argparse.ArgumentParser(prog="python -m au_face.data.datamodules.photos", description=main.__doc__)
    parser.add_argument("root", type=Path, help="the collection folder")
    parser.add_argument("--cache", type=Path, required=True, help="coarse cache folder")
    parser.add_argument("--csv", default="data/legend.csv", help="expression CSV relative to ROOT")
    parser.add_argument("--image-dir", default="images", help="image folder relative to ROOT")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], choices=["train", "val", "reserved"])
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument(
        "--max-per-expression",
        type=int,
        help="at most this many photos of each expression and split (cap_per_expression)",
    )
    parser.add_argument("--reconstructor", choices=RECONSTRUCTORS, default="mediapipe")
    parser.add_argument("--landmarker-model", type=Path, help="the Face Landmarker model (reconstructor landmarker)")
    parser.add_argument(
        "--appearance", action="store_true", help="also cache appearance descriptors (preprocess --appearance)"
    )
    args = parser.parse_args(argv)
    try:
        table = read_expression_csv(args.root / args.csv)
        splits = split_photos(table.photos, args.val_fraction)
        videos = [
            args.root / args.image_dir / p.image
            for s in args.splits
            for p in cap_per_expression(splits[s], args.max_per_expression)
        ]
        cache = CoarseCache(
            args.cache,
            args.reconstructor,
            reconstructor_version(args.reconstructor),
            args.root,
            appearance=args.appearance,
        )
        reconstructor = build_reconstructor(
            args.reconstructor, model_path=args.landmarker_model, appearance=args.appearance
        )
        start = time.perf_counter()

        def progress(done: int, total: int) -> None:
            rate = (time.perf_counter() - start) / done
            print(f"{done}/{total} photos, {1000 * rate:.0f} ms each", file=sys.stderr, flush=True)

        counts = fill_cache(cache, reconstructor, videos, progress=progress)
    except AUFaceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(videos)} photos ({', '.join(args.splits)}); reconstructed now: {counts or 'none'}; cache {args.cache}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
