"""``au-face fit|validate|test|predict``: LightningCLI with one geometry for model and data.

Imported only when a training subcommand runs (Lightning takes seconds to import).

A config is composed of parts: ``trainer: trainer/default.yaml``, ``model: model/paper.yaml``,
``data: data/bp4d.yaml`` (paths relative to the config), plus the top-level ``geometry`` (a
:class:`~au_face.geometry.GeometrySpec`, given to both model and data; a checkpoint as its ``file``
means fine-tuning that checkpoint) and ``run_dir`` (where logs
and checkpoints go; strings ``{run_dir}`` in the trainer's logger and callbacks are replaced by it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningCLI

from au_face.errors import Terminated
from au_face.geometry import GeometrySpec

#: data arguments the model takes over, so both cut clips and take S̄ the same way
LINKED = ("clip_length", "reference")
RUN_DIR = "{run_dir}"


class AUFaceCLI(LightningCLI):
    """LightningCLI with a shared ``geometry``, settings linked from the data to the model, and ``run_dir``."""

    #: the run folder of the latest run (to point an interrupted ``fit`` at its ``last.ckpt``)
    last_run_dir: str | None = None

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--geometry", type=GeometrySpec, default=GeometrySpec(), help="the face geometry of model and data"
        )
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help="logs and checkpoints (default: outputs/<config name>[_fold<k>])",
        )
        parser.link_arguments("geometry", "model.init_args.geometry", apply_on="parse")
        parser.link_arguments("geometry", "data.init_args.geometry", apply_on="parse")
        parser.link_arguments(
            "geometry", "model.init_args.init_checkpoint", compute_fn=fine_tuned_checkpoint, apply_on="parse"
        )
        for name in LINKED:
            parser.link_arguments(f"data.init_args.{name}", f"model.init_args.{name}", apply_on="parse")

    def parse_arguments(self, parser, args) -> None:
        """Parse; then ``--ckpt_path`` is read with ``weights_only=True`` (tensors and plain values,
        never code) unless ``--weights_only false`` is given, and a file that fails is one clear error."""
        from au_face.io.checkpoints import read_checkpoint

        super().parse_arguments(parser, args)
        config = self.config.get(self.config.get("subcommand") or "")
        if config is None:
            return
        if config.get("weights_only") is None:
            config["weights_only"] = True
        path = config.get("ckpt_path")
        if config["weights_only"] and path and os.path.isfile(path):
            read_checkpoint(path)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        run_dir = config.get("run_dir") or default_run_dir(config)
        config["run_dir"] = AUFaceCLI.last_run_dir = run_dir
        trainer = config["trainer"]
        if trainer.get("default_root_dir") is None:
            trainer["default_root_dir"] = run_dir
        for part in _as_list(trainer.get("logger")) + _as_list(trainer.get("callbacks")):
            init_args = part.get("init_args") if hasattr(part, "get") else None
            if init_args is None:
                continue
            for key, value in vars(init_args).items():
                if isinstance(value, str) and RUN_DIR in value:
                    init_args[key] = value.replace(RUN_DIR, run_dir)


def fine_tuned_checkpoint(geometry: GeometrySpec) -> str | None:
    """A geometry taken from a checkpoint means fine-tuning that checkpoint: its weights are loaded too."""
    return geometry.file if geometry.file and geometry.file.endswith(".ckpt") else None


def default_run_dir(config: Any) -> str:
    """``outputs/<name of the last --config>``, with ``_fold<k>`` when the data has a fold."""
    configs = [c for c in (config.get("config") or []) if c is not None]
    name = Path(str(configs[-1])).stem if configs else "run"
    fold = config.get("data.init_args.fold") if config.get("data") is not None else None
    return str(Path("outputs") / (f"{name}_fold{fold}" if fold is not None else name))


def _as_list(value: Any) -> list:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, list) else [value]


def run_lightning(argv: Sequence[str] | None) -> int:
    """``fit | validate | test | predict`` through LightningCLI (subclass mode)."""
    from au_face.data.datamodules.base import SequenceDataModule
    from au_face.training.task import AUFaceTask

    AUFaceCLI.last_run_dir = None
    try:
        AUFaceCLI(
            AUFaceTask,
            SequenceDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=None if argv is None else list(argv),
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )
    except SystemExit as exit_:  # Lightning ends an interrupted run with exit(1), or exit(None) after SIGTERM
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        interrupt = exit_.__context__
        if not (isinstance(exit_, SIGTERMException) or isinstance(interrupt, KeyboardInterrupt)):
            raise
        terminated = isinstance(exit_, SIGTERMException) or isinstance(interrupt, Terminated)
        print(
            f"au-face: {'terminated' if terminated else 'interrupted'}{_resume_hint(AUFaceCLI.last_run_dir)}",
            file=sys.stderr,
        )
        return 143 if terminated else 130
    return 0


def _resume_hint(run_dir: str | None) -> str:
    """How to go on from the last checkpoint of ``run_dir``, if one was written."""
    last = sorted(Path(run_dir).rglob("last.ckpt")) if run_dir else []
    if not last:
        return "; no checkpoint was written yet"
    return f"; resume from {last[0]} with the same command and --ckpt_path last"
