"""Subject-independent 3-fold protocols of BP4D and DISFA (fold lists shipped as package data).

The lists are those of JAA-Net and ME-GraphAU (see ``resources/folds/*.json`` for the
sources); each fold tests on one part of the subjects and trains on the other two.
Validation is the test fold, as in those papers, unless the caller chooses otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from au_face.errors import AUFaceError

FOLD_DATASETS = ("bp4d", "disfa")


class FoldError(AUFaceError, ValueError):
    """Unknown dataset or fold number."""


@dataclass(frozen=True)
class FoldProtocol:
    """The parts of a dataset's subjects and which part each fold tests on."""

    dataset: str
    parts: dict[str, tuple[str, ...]]
    test_part: dict[int, str]
    source: str

    @property
    def folds(self) -> list[int]:
        return sorted(self.test_part)

    @property
    def subjects(self) -> list[str]:
        return sorted(s for part in self.parts.values() for s in part)

    def split(self, fold: int) -> tuple[list[str], list[str]]:
        """``(train_subjects, test_subjects)`` of ``fold``."""
        if fold not in self.test_part:
            raise FoldError(f"{self.dataset} has folds {self.folds}, not {fold!r}")
        test_key = self.test_part[fold]
        train = [s for key, part in self.parts.items() if key != test_key for s in part]
        return train, list(self.parts[test_key])


@cache
def load_protocol(dataset: str) -> FoldProtocol:
    """The fold protocol of ``dataset`` (``"bp4d"`` or ``"disfa"``), checked for consistency."""
    key = dataset.strip().lower()
    if key not in FOLD_DATASETS:
        raise FoldError(f"no fold protocol for {dataset!r}; known: {', '.join(FOLD_DATASETS)}")
    text = resources.files("au_face").joinpath("resources", "folds", f"{key}.json").read_text()
    raw = json.loads(text)
    protocol = FoldProtocol(
        dataset=key,
        parts={name: tuple(subjects) for name, subjects in raw["parts"].items()},
        test_part={int(fold): part for fold, part in raw["test_part"].items()},
        source=raw["source"],
    )
    everyone = [s for part in protocol.parts.values() for s in part]
    if len(everyone) != len(set(everyone)):
        raise FoldError(f"{key} fold lists repeat a subject")
    if sorted(protocol.test_part.values()) != sorted(protocol.parts):
        raise FoldError(f"{key} folds must test on each part exactly once")
    return protocol


def fold_split(dataset: str, fold: int) -> tuple[list[str], list[str]]:
    """``(train_subjects, test_subjects)`` of fold 1, 2 or 3 of ``dataset``."""
    return load_protocol(dataset).split(fold)


def fold_splits(dataset: str, fold: int, val_subjects: list[str] | None = None) -> dict[str, list[str]]:
    """Subjects of the train/val/test/predict splits of a fold.

    Validation is the test fold (as JAA-Net and ME-GraphAU report) unless ``val_subjects``
    names training subjects to hold out instead.
    """
    train, test = fold_split(dataset, fold)
    val = test
    if val_subjects:
        outside = sorted(set(val_subjects) - set(train))
        if outside:
            raise FoldError(f"validation subjects {outside} are not training subjects of {dataset} fold {fold}")
        train = [s for s in train if s not in set(val_subjects)]
        val = list(val_subjects)
    return {"train": train, "val": val, "test": test, "predict": test}
