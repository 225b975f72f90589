"""Evaluator: which metrics validation and test log, as one configurable part of the task."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lightning.pytorch.callbacks import Callback

#: Metric groups an :class:`Evaluator` can log.
METRICS = ("au_f1", "mesh", "filter_baselines")


@dataclass
class Evaluator:
    """Metrics logged on validation and test.

    Attributes:
        metrics: ``au_f1`` (per-AU F1 and its mean), ``mesh`` (acceleration, vertex error to ground
            truth) and ``filter_baselines`` (Gaussian and One-Euro filters of the same coarse clips,
            settings chosen on validation).
        threshold: probability at which an AU counts as present.
        fps: frame rate the One-Euro baseline assumes.
    """

    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    threshold: float = 0.5
    fps: float = 25.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")

    def callbacks(self) -> list[Callback]:
        """One Trainer callback per metric group (each keeps its metrics across epochs)."""
        from au_face.evaluation.callbacks import AUF1Callback, FilterBaselineCallback, MeshSmoothnessCallback

        build = {
            "au_f1": lambda: AUF1Callback(self.threshold),
            "mesh": MeshSmoothnessCallback,
            "filter_baselines": lambda: FilterBaselineCallback(fps=self.fps),
        }
        return [build[name]() for name in self.metrics]

    @staticmethod
    def au_f1(results: Mapping[str, float], aus: list[int], stage: str = "test") -> dict[int, float]:
        """Per-AU F1 from the dict ``trainer.test()``/``validate()`` returns (NaN where it was not
        logged: no positive label and no positive prediction, so F1 is undefined)."""
        from au_face.evaluation.callbacks import AUF1Callback

        return {au: float(results.get(AUF1Callback.key(stage, au), math.nan)) for au in aus}
