"""Synthetic 4D AU data from the ICT-FaceKit model (generated once, cached on disk)."""

from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path

from au_face.data.clips import SequenceRecord
from au_face.data.datamodules.base import SequenceDataModule, count_frames
from au_face.data.labels import align_labels, read_folder_csv
from au_face.data.synthetic.config import SyntheticConfig
from au_face.data.synthetic.generate import SyntheticIndex, generate_synthetic_dataset, load_synthetic_index
from au_face.faces.correspondence import TopologyMap
from au_face.faces.ict import ICTFaceModel, load_face_model
from au_face.faces.mediapipe import mediapipe_topology
from au_face.faces.registry import UnknownTopologyError
from au_face.utils.assets import ICT_MODEL

SPLIT_NAMES = {"train": "train", "val": "val", "test": "test", "predict": "test"}
#: Topologies the ICT-generated sequences can be served on.
SYNTHETIC_TOPOLOGIES = ("ict", "mediapipe")


class SyntheticDataModule(SequenceDataModule):
    """Sequences generated from the ICT model with known ground-truth meshes.

    Train/val/test use different identities. Served on the geometry's topology, ``ict`` (the
    generator's own mesh) or ``mediapipe``: noise-model sequences (generated on ICT's mesh) are
    carried to MediaPipe's 468 points as they are loaded
    (:class:`~au_face.faces.correspondence.TopologyMap`); sim-to-real sequences (``generator.coarse_source:
    mediapipe``) are MediaPipe's own output on renders and are used as they are. Either trains
    models that refine ``au-face reconstruct``'s MediaPipe meshes. Labels are served for the
    geometry's AUs, which replace the generator's.

    Args:
        root: where the dataset is generated and cached.
        ict_path: ICT-FaceKit npz or FaceXModel folder (default ``$AU_FACE_ICT``); read only to generate
            the dataset (or to carry ICT meshes to MediaPipe's points), so a generated dataset needs no ICT files.
        generator: generator settings.
        Other arguments: see :class:`SequenceDataModule`.
    """

    def __init__(
        self,
        root: str = "outputs/synthetic",
        ict_path: str | None = None,
        generator: SyntheticConfig | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.ict_path = ict_path
        self.generator = generator or SyntheticConfig()

    @cached_property
    def config(self) -> SyntheticConfig:
        """The generator settings for the geometry's AUs, checked against its topology."""
        topology = self.geometry.topology.name
        if topology not in SYNTHETIC_TOPOLOGIES:
            raise UnknownTopologyError(
                f"synthetic data can be served on topology {' or '.join(SYNTHETIC_TOPOLOGIES)}, not {topology!r}"
            )
        if self.generator.topology == "mediapipe" and topology != "mediapipe":
            raise UnknownTopologyError(
                "sim-to-real data (generator.coarse_source: mediapipe) is on the mediapipe topology; set geometry.topology: mediapipe"
            )
        return dataclasses.replace(self.generator, aus=tuple(self.aus))

    @cached_property
    def ict_model(self) -> ICTFaceModel:
        return load_face_model(ICT_MODEL.resolve(self.ict_path))

    @cached_property
    def topology_map(self) -> TopologyMap | None:
        """ICT -> MediaPipe map when serving MediaPipe meshes; None when serving ICT meshes."""
        if self.geometry.topology.name == "ict":
            return None
        return TopologyMap.between(self.ict_model.topology(), mediapipe_topology())

    def prepare_data(self) -> None:
        generate_synthetic_dataset(self.root, self.ict_path, self.config)

    @cached_property
    def index(self) -> SyntheticIndex:
        """The dataset's index, generating (or finishing) the dataset if needed."""
        return load_synthetic_index(self.root, self.config) or generate_synthetic_dataset(
            self.root, self.ict_path, self.config
        )

    def records(self, split: str) -> list[SequenceRecord]:
        index = self.index
        out = []
        for seq_id in index.splits[SPLIT_NAMES[split]]:
            carried = self.topology_map if self.config.topology == "ict" else None
            record = SequenceRecord(
                seq_id,
                index.identities[seq_id],
                index.coarse_path(seq_id),
                gt_path=index.gt_path(seq_id),
                vertex_map=carried,
            )
            track = read_folder_csv(index.labels_path(seq_id), self.aus)
            labels = align_labels(track, count_frames(record), policy="error").labels
            out.append(dataclasses.replace(record, labels=labels))
        return out
