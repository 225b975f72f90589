"""``au-face fit|validate|test|predict``: LightningCLI with the model linked to the datamodule.

Imported only when a training subcommand runs (Lightning takes seconds to import).
"""

from __future__ import annotations

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
