"""Sequences (coarse frames + labels + optional ground truth) cut into clips of L frames."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from au_face.coarse.base import CoarseFrames
from au_face.errors import AUFaceError


class SequenceError(AUFaceError, ValueError):
    """Raised when a sequence's parts (coarse frames, labels, ground truth) disagree."""


#: Carries meshes ``[..., V, 3]`` (float32 arrays) to another topology, e.g.
#: :class:`au_face.faces.correspondence.TopologyMap`. Must pickle for DataLoader workers.
VertexMap = Callable[[np.ndarray], np.ndarray]
#: S̄ ``[V,3]`` of frames ``[T,V,3]`` with validity ``[T]``, e.g. :class:`au_face.geometry.neutral.NeutralEstimator`
#: (None: the mean over valid frames).
ReferenceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SequenceRecord:
    """One video of a dataset.

    Attributes:
        name: unique id. subject: subject id (folds are by subject).
        coarse_path: a :class:`CoarseFrames` npz (coarse cache).
        labels: ``[T,K]`` int8 (1/0/−1), aligned to the coarse frames, or None (prediction only).
        gt_path: npz with ground-truth ``vertices [T,V,3]``, or None.
        vertex_map: applied to the coarse vertices, S̄ and ground truth as they are loaded (the
            stored files stay on their own topology), or None.
    """

    name: str
    subject: str
    coarse_path: Path
    labels: np.ndarray | None = None
    gt_path: Path | None = None
    vertex_map: VertexMap | None = None


@dataclass
class LoadedSequence:
    vertices: torch.Tensor
    valid: torch.Tensor
    reference: torch.Tensor
    crops: torch.Tensor | None
    features: torch.Tensor | None
    gt_vertices: torch.Tensor | None
    gt_reference: torch.Tensor | None = None
    appearance: torch.Tensor | None = None


class SequenceCache:
    """A small LRU cache of loaded sequences, so clips of one video share one load."""

    def __init__(self, capacity: int = 64, reference_fn: ReferenceFn | None = None) -> None:
        self.capacity = capacity
        self.reference_fn = reference_fn
        self._items: OrderedDict[Path, LoadedSequence] = OrderedDict()

    def get(self, record: SequenceRecord) -> LoadedSequence:
        key = record.coarse_path
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        loaded = load_sequence(record, self.reference_fn)
        self._items[key] = loaded
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return loaded


def load_sequence(record: SequenceRecord, reference_fn: ReferenceFn | None = None) -> LoadedSequence:
    """Read a record's arrays, check that their frame counts agree, apply its vertex map, and
    compute S̄ with ``reference_fn`` (default: the mean over valid frames)."""
    coarse = CoarseFrames.load(record.coarse_path)
    t = len(coarse)
    if record.labels is not None and len(record.labels) != t:
        raise SequenceError(
            f"{record.name}: {len(record.labels)} label rows but {t} coarse frames in {record.coarse_path}"
        )
    gt = gt_reference = None
    if record.gt_path is not None:
        with np.load(record.gt_path) as z:
            gt = torch.from_numpy(z["vertices"].astype(np.float32))
            if "neutral" in z.files:
                gt_reference = torch.from_numpy(z["neutral"].astype(np.float32))
        if gt.shape != coarse.vertices.shape:
            raise SequenceError(
                f"{record.name}: ground truth {tuple(gt.shape)} vs coarse {tuple(coarse.vertices.shape)}"
            )
    valid = coarse.valid.bool()
    vertices, reference = coarse.vertices.float(), coarse.mean_shape().float()
    if record.vertex_map is not None:
        vertices = _carry(record.vertex_map, vertices) * valid[:, None, None]  # frames without a face stay zero
        reference = _carry(record.vertex_map, reference)
        gt = None if gt is None else _carry(record.vertex_map, gt)
        gt_reference = None if gt_reference is None else _carry(record.vertex_map, gt_reference)
    if reference_fn is not None:
        reference = reference_fn(vertices, valid).float()
    return LoadedSequence(
        vertices=vertices,
        valid=valid,
        reference=reference,
        crops=coarse.crops,
        features=coarse.features.float() if coarse.features is not None else None,
        gt_vertices=gt,
        gt_reference=gt_reference,
        appearance=coarse.appearance.float() if coarse.appearance is not None else None,
    )


def _carry(vertex_map: VertexMap, vertices: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(vertex_map(vertices.numpy()), dtype=np.float32))


def clip_starts(num_frames: int, length: int, stride: int) -> list[int]:
    """Start frames of clips covering ``num_frames`` (the last clip may be padded)."""
    if num_frames <= length:
        return [0]
    starts = list(range(0, num_frames - length + 1, stride))
    if starts[-1] + length < num_frames:
        starts.append(starts[-1] + stride if stride < length else num_frames - length)
    return starts


@dataclass
class Mirror:
    """Left/right flip of a clip: vertex ``pairs`` ``[V]`` (an involution), the symmetry plane
    ``x = centre`` of the canonical frame, and the ``share`` of training items flipped."""

    pairs: torch.Tensor
    centre: float
    share: float

    @classmethod
    def of(cls, template: np.ndarray, share: float) -> Mirror:
        """The flip of a topology from its (left/right symmetric) canonical ``template [V,3]``."""
        from au_face.faces.mediapipe import mirror_map

        pairs, _ = mirror_map(np.asarray(template, dtype=np.float64))
        return cls(torch.from_numpy(pairs), float(np.asarray(template)[:, 0].mean()), share)

    def vertices(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., V, 3]`` mirrored about the plane."""
        flipped = x[..., self.pairs, :].clone()
        flipped[..., 0] = 2 * self.centre - flipped[..., 0]
        return flipped

    def __call__(self, item: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(item)
        for key in ("vertices", "reference", "gt_vertices", "gt_reference"):
            if key in out:
                out[key] = self.vertices(out[key])
        if "crops" in out:
            out["crops"] = out["crops"].flip(-1)
        if "appearance" in out:  # the descriptor of the flipped image is not known: absent (NaN)
            out["appearance"] = torch.full_like(out["appearance"], float("nan"))
        return out


class ClipDataset(Dataset):
    """Clips of ``length`` frames from a list of sequences.

    Items are dicts: ``vertices [L,V,3]``, ``valid [L]``, ``reference [V,3]`` (S̄ of the
    whole video), ``labels [L,K]`` int8 (−1 where unknown or padded), ``crops [L,3,H,W]``
    float in [0,1] and/or ``features [L,F]`` when present and asked for, appearance descriptors
    ``appearance [L,D]`` when the records carry them (NaN in a flipped item), ``gt_vertices``
    when present, and ``sequence``/``start`` indices. Padded frames have ``valid=False``.

    ``single_frames`` adds that share of extra items that are one frame alone (the rest of the
    clip padded), with S̄ estimated from that frame only, as for a still image at inference.
    ``mirror`` (a :class:`Mirror`) flips that share of items left/right: meshes, S̄ and ground
    truth through the topology's vertex symmetry, crops horizontally; labels stay (the AUs are
    scored for both sides together). :meth:`share_references` gives some sequences a second S̄,
    fitted over a group of them (one person's photos), used for a share of their items.
    """

    def __init__(
        self,
        records: list[SequenceRecord],
        num_frames: list[int],
        length: int,
        stride: int,
        num_aus: int,
        use_crops: bool = True,
        cache_size: int = 64,
        reference_fn: ReferenceFn | None = None,
        single_frames: float = 0.0,
        seed: int = 0,
        mirror: Mirror | None = None,
    ) -> None:
        if length < 1 or stride < 1:
            raise ValueError("clip length and stride must be positive")
        self.mirror = mirror
        self.records = records
        self.length = length
        self.num_aus = num_aus
        self.use_crops = use_crops
        self.reference_fn = reference_fn
        self.cache = SequenceCache(cache_size, reference_fn)
        self.index = [(i, s, length) for i, n in enumerate(num_frames) for s in clip_starts(n, length, stride)]
        self.shared_references: dict[int, torch.Tensor] = {}
        self.shared_share = 0.0
        if single_frames > 0:
            frames = [(i, t, 1) for i, n in enumerate(num_frames) for t in range(n)]
            chosen = np.random.default_rng(seed).choice(
                len(frames), min(len(frames), int(single_frames * len(self.index))), replace=False
            )
            self.index += [frames[j] for j in sorted(chosen)]

    def __len__(self) -> int:
        return len(self.index)

    def share_references(self, references: dict[int, torch.Tensor], share: float) -> None:
        """Serve ``references[i]`` (``[V,3]``, e.g. S̄ fitted over all photos of sequence ``i``'s person,
        as a video's S̄ is fitted over its frames) instead of sequence ``i``'s own S̄ in ``share`` of its
        items, drawn per item (before any mirroring, which flips it with the item)."""
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1], got {share}")
        unknown = sorted(set(references) - set(range(len(self.records))))
        if unknown:
            raise ValueError(f"no sequences {unknown[:5]} among the {len(self.records)} of this dataset")
        self.shared_references, self.shared_share = dict(references), share

    def clip_labels(self, item: int) -> np.ndarray:
        """``[L,K]`` labels of a clip without loading its meshes (for sampling weights)."""
        seq, start, span = self.index[item]
        labels = self.records[seq].labels
        if labels is None:
            return np.full((self.length, self.num_aus), -1, np.int8)
        return labels[start : start + span]

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        seq, start, span = self.index[item]
        record = self.records[seq]
        data = self.cache.get(record)
        stop = min(start + span, len(data.valid))
        pad = self.length - (stop - start)

        def take(x: torch.Tensor, fill: float | int = 0) -> torch.Tensor:
            part = x[start:stop]
            if pad:
                part = torch.cat([part, torch.full((pad, *part.shape[1:]), fill, dtype=part.dtype)])
            return part

        labels = torch.full((len(data.valid), self.num_aus), -1, dtype=torch.int8)
        if record.labels is not None:
            labels = torch.from_numpy(np.ascontiguousarray(record.labels, dtype=np.int8))
        reference = data.reference
        if span < self.length:  # a lone frame: S̄ from that frame only
            alone = data.vertices[start:stop]
            reference = self.reference_fn(alone, data.valid[start:stop]).float() if self.reference_fn else alone.mean(0)
        if seq in self.shared_references and torch.rand(()) < self.shared_share:
            reference = self.shared_references[seq]
        out = {
            "vertices": take(data.vertices),
            "valid": take(data.valid, False),
            "reference": reference,
            "labels": take(labels, -1),
            "sequence": torch.tensor(seq),
            "start": torch.tensor(start),
        }
        if self.use_crops and data.crops is not None:
            out["crops"] = take(data.crops).permute(0, 3, 1, 2).float() / 255.0
        if data.features is not None:
            out["features"] = take(data.features)
        if data.appearance is not None:
            out["appearance"] = take(data.appearance)
        if data.gt_vertices is not None:
            out["gt_vertices"] = take(data.gt_vertices)
        if data.gt_reference is not None:
            out["gt_reference"] = data.gt_reference
        if self.mirror is not None and torch.rand(()) < self.mirror.share:
            out = self.mirror(out)
        return out
