"""Generate a synthetic dataset on disk: the index, the job pool over sequences, resuming an interrupted run.

The layout and the data itself are described in :mod:`au_face.data.synthetic`."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from au_face.aus import au_label
from au_face.coarse.base import CoarseFrames
from au_face.data.synthetic.config import (
    GENERATOR_VERSION,
    INDEX_NAME,
    SPLITS,
    SyntheticConfig,
    config_fingerprint,
    sequence_id,
)
from au_face.data.synthetic.rasterizers import RENDERER_NAMES, renderer_name, require_backend
from au_face.data.synthetic.simulate import SequenceSimulator
from au_face.errors import AUFaceError
from au_face.faces.ict import ICTFaceModel
from au_face.utils.assets import ICT_MODEL
from au_face.utils.files import atomic_write_text

logger = logging.getLogger(__name__)


@dataclass
class SyntheticIndex:
    """A complete synthetic dataset on disk (the content of ``synthetic.json`` plus its root)."""

    root: Path
    config: SyntheticConfig
    renderer: str
    generator_version: str
    splits: dict[str, list[str]]
    identities: dict[str, str]
    expression_names: list[str] = field(default_factory=list)

    @property
    def aus(self) -> tuple[int, ...]:
        return self.config.aus

    def coarse_path(self, seq_id: str) -> Path:
        return self.root / "coarse" / f"{seq_id}.npz"

    def labels_path(self, seq_id: str) -> Path:
        return self.root / "labels" / f"{seq_id}.csv"

    def gt_path(self, seq_id: str) -> Path:
        return self.root / "gt" / f"{seq_id}.npz"

    def to_json(self) -> str:
        return json.dumps(
            {
                "generator_version": self.generator_version,
                "renderer": self.renderer,
                "topology": self.config.topology,
                "aus": list(self.aus),
                "au_labels": [au_label(a) for a in self.aus],
                "config": self.config.to_dict(),
                "splits": self.splits,
                "identities": self.identities,
                "expression_names": self.expression_names,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, root: Path, text: str) -> SyntheticIndex:
        data = json.loads(text)
        return cls(
            root=Path(root),
            config=SyntheticConfig.from_dict(data["config"]),
            renderer=str(data["renderer"]),
            generator_version=str(data["generator_version"]),
            splits={k: list(v) for k, v in data["splits"].items()},
            identities=dict(data["identities"]),
            expression_names=list(data.get("expression_names", [])),
        )


def load_synthetic_index(root: str | Path, config: SyntheticConfig | None = None) -> SyntheticIndex | None:
    """The dataset at ``root``, or None when absent, incomplete, or made differently.

    "Made differently" means another generator version or render backend, or (when given) another
    config; data made with either ray engine of the ``embree`` backend serves on both.
    """
    root = Path(root)
    path = root / INDEX_NAME
    if not path.is_file():
        return None
    try:
        index = SyntheticIndex.from_json(root, path.read_text())
    except (ValueError, KeyError, TypeError) as err:
        logger.warning("ignoring unreadable %s: %s", path, err)
        return None
    # the renderer it was made with, not the engine this machine would use: data made with Embree
    # serves where only rtree is installed (a training machine, say) without being made again
    if index.generator_version != GENERATOR_VERSION or index.renderer not in RENDERER_NAMES.get(
        index.config.render_backend, ()
    ):
        return None
    if config is not None and index.config.to_dict() != config.to_dict():
        return None
    fingerprint = config_fingerprint(index.config, index.renderer)
    for ids in index.splits.values():
        for seq_id in ids:
            paths = (index.coarse_path(seq_id), index.labels_path(seq_id), index.gt_path(seq_id))
            if not all(p.is_file() for p in paths) or _stored_fingerprint(index.gt_path(seq_id)) != fingerprint:
                return None
    return index


def _stored_fingerprint(gt_path: Path) -> str | None:
    try:
        with np.load(gt_path) as gt:
            return str(gt["fingerprint"])
    except (OSError, ValueError, KeyError, EOFError):
        return None


def generate_synthetic_dataset(
    root: str | Path,
    ict_path: str | Path | None,
    config: SyntheticConfig | None = None,
    workers: int | None = None,
) -> SyntheticIndex:
    """Generate (or reuse, or finish) the synthetic dataset at ``root``.

    Args:
        root: output folder.
        ict_path: ICT-FaceKit npz or FaceXModel folder (None: ``$AU_FACE_ICT``).
        config: generator settings (default :class:`SyntheticConfig`).
        workers: processes for generation (default: up to 2, one for small jobs). The output does
            not depend on it.

    A complete dataset made by the same config is returned as is (whatever loads here). Otherwise
    sequences already written completely by an interrupted run of the same config are kept and the
    rest generated; a ``render_backend`` that does not load here raises
    :class:`~au_face.data.synthetic.rasterizers.RendererBackendError` before anything is written.
    """
    root = Path(root)
    config = config or SyntheticConfig()
    cached = load_synthetic_index(root, config)
    if cached is not None:
        return cached
    require_backend(config.render_backend)
    ict_path = ICT_MODEL.resolve(ict_path)
    root.mkdir(parents=True, exist_ok=True)
    (root / INDEX_NAME).unlink(missing_ok=True)
    plan = [job for split in SPLITS for job in config.jobs(split)]
    todo = [job for job in plan if not _sequence_complete(root, sequence_id(*job), config)]
    logger.info("synthetic data: %d of %d sequences to generate in %s", len(todo), len(plan), root)

    start = time.perf_counter()
    render_seconds = _run_jobs(root, ict_path, config, todo, workers)
    if todo:
        frames = len(todo) * config.frames_per_sequence
        logger.info(
            "synthetic data: %d sequences in %.1f s (render %.1f ms/frame)",
            len(todo),
            time.perf_counter() - start,
            1000 * render_seconds / frames,
        )

    model = ICTFaceModel.load(ict_path)
    index = SyntheticIndex(
        root=root,
        config=config,
        renderer=renderer_name(config.render_backend),
        generator_version=GENERATOR_VERSION,
        splits={split: [sequence_id(*job) for job in config.jobs(split)] for split in SPLITS},
        identities={sequence_id(*job): f"{job[0]}-{job[1]:03d}" for job in plan},
        expression_names=list(model.expression_names),
    )
    atomic_write_text(root / INDEX_NAME, index.to_json())
    return index


_WORKER: SequenceSimulator | None = None


def _init_worker(ict_path: Path, config: SyntheticConfig) -> None:
    global _WORKER
    torch.set_num_threads(1)
    _WORKER = SequenceSimulator(ict_path, config)


def _work(root: Path, job: tuple[str, int, int]) -> float:
    assert _WORKER is not None
    return _WORKER.write(root, *job)


def _run_jobs(
    root: Path, ict_path: Path, config: SyntheticConfig, jobs: list[tuple[str, int, int]], workers: int | None
) -> float:
    """Generate ``jobs``; returns total render seconds.

    Several workers are spawned processes (the renderer holds the GIL; forking would copy Embree's
    and OpenMP's thread state). If they cannot start, e.g. a script without an
    ``if __name__ == "__main__":`` guard, generation falls back to this process.
    """
    if not jobs:
        return 0.0
    if workers is None:
        workers = 1 if len(jobs) < 8 else min(2, os.cpu_count() or 1)
    if workers > 1:
        context = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(
                workers, mp_context=context, initializer=_init_worker, initargs=(ict_path, config)
            ) as pool:
                return sum(pool.map(_work, [root] * len(jobs), jobs))
        except BrokenProcessPool:
            logger.warning("synthetic data: worker processes failed to start; generating in this process")
            jobs = [job for job in jobs if not _sequence_complete(root, sequence_id(*job), config)]
    simulator = SequenceSimulator(ict_path, config)
    return sum(simulator.write(root, *job) for job in jobs)


# --------------------------------------------------------------------------------------------
# resume support


def _sequence_complete(root: Path, seq_id: str, config: SyntheticConfig) -> bool:
    """``seq_id`` was written completely by a run of ``config``: its ``gt`` file carries the config's
    fingerprint and all three files load with the expected shapes."""
    n = config.frames_per_sequence
    try:
        with np.load(root / "gt" / f"{seq_id}.npz") as gt:
            gt_ok = (
                str(gt["fingerprint"]) == config_fingerprint(config)
                and gt["vertices"].shape[0] == n
                and gt["activations"].shape == (n, len(config.aus))
            )
        if not gt_ok:
            return False
        coarse = CoarseFrames.load(root / "coarse" / f"{seq_id}.npz")
        lines = (root / "labels" / f"{seq_id}.csv").read_text().splitlines()
    except (OSError, ValueError, KeyError, EOFError, AUFaceError):
        return False
    side = config.crop_side
    crops_ok = coarse.crops is not None and tuple(coarse.crops.shape) == (n, side, side, 3)
    return crops_ok and len(coarse) == n and len(lines) == n + 1
