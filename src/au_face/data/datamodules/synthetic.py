"""Synthetic 4D AU data from the ICT-FaceKit model (generated once, cached on disk)."""

from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path

from au_face.assets import ICT_MODEL
from au_face.data.clips import SequenceRecord
from au_face.data.datamodules.base import SequenceDataModule, count_frames
from au_face.data.labels import align_labels, read_folder_csv
from au_face.data.synthetic import SyntheticConfig, SyntheticIndex, generate_synthetic_dataset, load_synthetic_index
from au_face.expression import ict_expression_basis
from au_face.faces.correspondence import TopologyMap
from au_face.faces.ict import ICTFaceModel
from au_face.faces.mediapipe import mediapipe_topology
from au_face.faces.registry import UnknownTopologyError
from au_face.fileutil import user_cache_dir
from au_face.geometry import FaceGeometry
from au_face.masks import build_masks

SPLIT_NAMES = {"train": "train", "val": "val", "test": "test", "predict": "test"}
#: Topologies the ICT-generated sequences can be served on.
SYNTHETIC_TOPOLOGIES = ("ict", "mediapipe")


class SyntheticDataModule(SequenceDataModule):
    """Sequences generated from the ICT model with known ground-truth meshes.

    Train/val/test use different identities. The coarse input is the ground truth plus
    regressor-like noise; rendered crops feed the video branch.

    With ``topology="mediapipe"`` the sequences (generated on ICT's mesh as always) are carried to
    MediaPipe's 468 points as they are loaded (:class:`~au_face.faces.correspondence.TopologyMap`):
    coarse vertices, S̄ and ground truth, in the MediaPipe template's frame and units; the masks are
    the ICT masks transferred to MediaPipe and the basis is the carried ICT basis. Crops are left
    as rendered. This trains models that refine ``au-face reconstruct``'s MediaPipe meshes.

    Args:
        root: where the dataset is generated and cached.
        ict_path: ICT-FaceKit npz or FaceXModel folder (default ``$AU_FACE_ICT``).
        generator: generator settings; its AU list is replaced by ``aus``.
        mask_rings: boundary width of the AU masks (mesh rings).
        topology: ``ict`` (the generator's own mesh) or ``mediapipe``.
        Other arguments: see :class:`SequenceDataModule`.
    """

    def __init__(
        self,
        root: str = "outputs/synthetic",
        ict_path: str | None = None,
        generator: SyntheticConfig | None = None,
        mask_rings: int = 3,
        topology: str = "ict",
        aus: str | list[str | int] = "bp4d",
        clip_length: int = 16,
        train_stride: int = 8,
        batch_size: int = 8,
        num_workers: int = 0,
        balanced_sampling: bool = False,
        use_crops: bool = True,
        cache_size: int = 64,
    ) -> None:
        super().__init__(aus, clip_length, train_stride, batch_size, num_workers, balanced_sampling, use_crops, cache_size)
        self.root = Path(root)
        self.ict_path = ICT_MODEL.resolve(ict_path)
        self.config = dataclasses.replace(generator or SyntheticConfig(), aus=tuple(self.au_list))
        self.mask_rings = mask_rings
        if topology not in SYNTHETIC_TOPOLOGIES:
            raise UnknownTopologyError(
                f"synthetic data can be served on topology {' or '.join(SYNTHETIC_TOPOLOGIES)}, not {topology!r}"
            )
        self.topology = topology

    @cached_property
    def ict_model(self) -> ICTFaceModel:
        return ICTFaceModel.load(self.ict_path).restrict("narrow")

    @cached_property
    def topology_map(self) -> TopologyMap | None:
        """ICT -> MediaPipe map for ``topology="mediapipe"``; None when serving ICT meshes."""
        if self.topology == "ict":
            return None
        return TopologyMap.between(self.ict_model.topology(), mediapipe_topology())

    def build_geometry(self) -> FaceGeometry:
        basis, _ = ict_expression_basis(self.ict_model)
        if self.topology_map is None:
            topology, method = self.ict_model.topology(), "ict"
        else:
            topology, method, basis = mediapipe_topology(), "transfer", self.topology_map.apply_basis(basis)
        masks = build_masks(topology, self.au_list, method, self.ict_model, user_cache_dir() / "masks", self.mask_rings)
        return FaceGeometry(topology, tuple(self.au_list), masks, basis)

    def prepare_data(self) -> None:
        generate_synthetic_dataset(self.root, self.ict_path, self.config)

    @cached_property
    def index(self) -> SyntheticIndex:
        """The dataset's index, generating (or finishing) the dataset if needed."""
        return load_synthetic_index(self.root, self.config) or generate_synthetic_dataset(self.root, self.ict_path, self.config)

    def records(self, split: str) -> list[SequenceRecord]:
        index = self.index
        out = []
        for seq_id in index.splits[SPLIT_NAMES[split]]:
            record = SequenceRecord(
                seq_id, index.identities[seq_id], index.coarse_path(seq_id), gt_path=index.gt_path(seq_id), vertex_map=self.topology_map
            )
            track = read_folder_csv(index.labels_path(seq_id), self.au_list)
            labels = align_labels(track, count_frames(record), policy="error").labels
            out.append(dataclasses.replace(record, labels=labels))
        return out
