"""``au-face fit|validate|test|predict``: LightningCLI with the model linked to the datamodule.

Imported only when a training subcommand runs (Lightning takes seconds to import).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

#: datamodule attributes the model is built from (fine-tuning on a new AU set is a config change)
LINKED = ("aus", "topology", "num_vertices", "expression_dim", "vertex_scale", "clip_length", "reference")


class AUFaceCLI(LightningCLI):
    """LightningCLI with the AU list, topology and sizes linked from the datamodule to the model."""

    def add_arguments_to_parser(self, parser) -> None:
        sources = {"topology": "topology_name"}
        for name in LINKED:
            parser.link_arguments(f"data.{sources.get(name, name)}", f"model.init_args.{name}", apply_on="instantiate")

    def parse_arguments(self, parser, args) -> None:
        """Parse; then ``--ckpt_path`` is read with ``weights_only=True`` (tensors and plain values,
        never code) unless ``--weights_only false`` is given, and a file that fails is one clear error."""
        from au_face.tasks.au_face import read_checkpoint

        super().parse_arguments(parser, args)
        config = self.config.get(self.config.get("subcommand") or "")
        if config is None:
            return
        if config.get("weights_only") is None:
            config["weights_only"] = True
        path = config.get("ckpt_path")
        if config["weights_only"] and path and os.path.isfile(path):
            read_checkpoint(path)


def run_lightning(argv: Sequence[str] | None) -> int:
    """``fit | validate | test | predict`` through LightningCLI (subclass mode)."""
    from au_face.data.datamodules.base import SequenceDataModule
    from au_face.tasks import AUFaceTask

    AUFaceCLI(
        AUFaceTask,
        SequenceDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=None if argv is None else list(argv),
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
    return 0
