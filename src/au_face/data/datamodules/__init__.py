"""One LightningDataModule per dataset, all on :class:`SequenceDataModule`."""

from au_face.data.datamodules.affwild2 import AffWild2DataModule
from au_face.data.datamodules.base import SequenceDataModule
from au_face.data.datamodules.bp4d import BP4DDataModule
from au_face.data.datamodules.cached import CachedVideoDataModule
from au_face.data.datamodules.disfa import DISFADataModule
from au_face.data.datamodules.folder import FolderAUDataModule
from au_face.data.datamodules.mixed import SyntheticPhotoDataModule
from au_face.data.datamodules.multiface import MultifaceDataModule
from au_face.data.datamodules.photos import ExpressionPhotoDataModule
from au_face.data.datamodules.synthetic import SyntheticDataModule

__all__ = [
    "AffWild2DataModule",
    "BP4DDataModule",
    "CachedVideoDataModule",
    "DISFADataModule",
    "ExpressionPhotoDataModule",
    "FolderAUDataModule",
    "MultifaceDataModule",
    "SequenceDataModule",
    "SyntheticDataModule",
    "SyntheticPhotoDataModule",
]
