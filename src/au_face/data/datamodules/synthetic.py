"""Synthetic 4D AU data from the ICT-FaceKit model (generated once, cached on disk)."""

from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path

import torch

from au_face.assets import ICT_MODEL
from au_face.data.clips import SequenceRecord
from au_face.data.datamodules.base import SequenceDataModule, count_frames
from au_face.data.labels import align_labels, read_folder_csv
from au_face.data.synthetic import SyntheticConfig, SyntheticIndex, generate_synthetic_dataset, load_synthetic_index
from au_face.expression import ict_expression_basis
from au_face.faces.correspondence import TopologyMap
from au_face.faces.ict import ICTFaceModel
from au_face.faces.mediapipe import mediapipe_topology, to_pose_frame
from au_face.faces.registry import UnknownTopologyError
from au_face.fileutil import user_cache_dir
from au_face.geometry import FaceGeometry
from au_face.masks import build_masks
from au_face.neutral import NeutralEstimator, fit_shape_indices

SPLIT_NAMES = {"train": "train", "val": "val", "test": "test", "predict": "test"}
#: Topologies the ICT-generated sequences can be served on.
SYNTHETIC_TOPOLOGIES = ("ict", "mediapipe")


class SyntheticDataModule(SequenceDataModule):
    """Sequences generated from the ICT model with known ground-truth meshes.

    Train/val/test use different identities. The coarse input is the ground truth plus
    regressor-like noise; rendered crops feed the video branch.

    With ``topology="mediapipe"`` the model works on MediaPipe's 468 points: the masks are the ICT
    masks transferred to MediaPipe and the basis is the carried ICT basis
    (:class:`~au_face.faces.correspondence.TopologyMap`). Noise-model sequences (generated on ICT's
    mesh) are carried as they are loaded; sim-to-real sequences (``generator.coarse_source:
    mediapipe``) are MediaPipe's own output on renders and are used as they are. Either trains
    models that refine ``au-face reconstruct``'s MediaPipe meshes.

    The geometry carries a :class:`~au_face.neutral.NeutralEstimator` built from the ICT model
    (template, identity modes, non-gaze expression shapes), used when ``reference="neutral"``.

    Args:
        root: where the dataset is generated and cached.
        ict_path: ICT-FaceKit npz or FaceXModel folder (default ``$AU_FACE_ICT``).
        generator: generator settings; its AU list is replaced by ``aus``.
        mask_rings: boundary width of the AU masks (mesh rings).
        topology: ``ict`` (the generator's own mesh) or ``mediapipe``.
        identity_modes: ICT identity modes the neutral estimator may use.
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
        reference: str = "mean",
        single_frames: float = 0.0,
        identity_modes: int = 50,
    ) -> None:
        super().__init__(
            aus, clip_length, train_stride, batch_size, num_workers, balanced_sampling, use_crops, cache_size, reference, single_frames
        )
        self.identity_modes = identity_modes
        self.root = Path(root)
        self.ict_path = ICT_MODEL.resolve(ict_path)
        self.config = dataclasses.replace(generator or SyntheticConfig(), aus=tuple(self.au_list))
        self.mask_rings = mask_rings
        if topology not in SYNTHETIC_TOPOLOGIES:
            raise UnknownTopologyError(
                f"synthetic data can be served on topology {' or '.join(SYNTHETIC_TOPOLOGIES)}, not {topology!r}"
            )
        if self.config.topology == "mediapipe" and topology != "mediapipe":
            raise UnknownTopologyError("sim-to-real data (generator.coarse_source: mediapipe) is on the mediapipe topology; set topology: mediapipe")
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
        basis, names = ict_expression_basis(self.ict_model)
        identity = self.ict_model.identity_deltas[: self.identity_modes]
        template = self.ict_model.neutral
        if self.topology_map is None:
            topology, method = self.ict_model.topology(), "ict"
        else:
            topology, method = mediapipe_topology(), "transfer"
            basis, identity = self.topology_map.apply_basis(basis), self.topology_map.apply_basis(identity)
            template = to_pose_frame(self.topology_map(template), self.topology_map(template))
        masks = build_masks(topology, self.au_list, method, self.ict_model, user_cache_dir() / "masks", self.mask_rings)
        neutral = NeutralEstimator(torch.from_numpy(template), torch.from_numpy(identity), torch.from_numpy(basis[fit_shape_indices(names)]))
        return FaceGeometry(topology, tuple(self.au_list), masks, basis, neutral)

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
            carried = self.topology_map if self.config.topology == "ict" else None
            record = SequenceRecord(seq_id, index.identities[seq_id], index.coarse_path(seq_id), gt_path=index.gt_path(seq_id), vertex_map=carried)
            track = read_folder_csv(index.labels_path(seq_id), self.au_list)
            labels = align_labels(track, count_frames(record), policy="error").labels
            out.append(dataclasses.replace(record, labels=labels))
        return out
