"""The ``au-face`` command: LightningCLI subcommands plus reconstruct/preprocess/masks/evaluate."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from au_face.errors import AUFaceError

#: non-training subcommands → module in ``au_face.commands``
COMMANDS = {
    "reconstruct": "Reconstruct a video: coarse meshes, AU-aware refinement, CSV, overlay.",
    "preprocess": "Run the coarse reconstructor over videos into a resumable cache.",
    "masks": "Build and draw the AU vertex masks of a topology.",
    "evaluate": "Per-AU F1 tables over dataset folds.",
}

#: datamodule attributes the model is built from (fine-tuning on a new AU set is a config change)
LINKED = ("aus", "topology", "num_vertices", "expression_dim", "vertex_scale", "clip_length")


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


def run_command(name: str, argv: Sequence[str]) -> int:
    module = importlib.import_module(f"au_face.commands.{name}")
    parser = argparse.ArgumentParser(prog=f"au-face {name}", description=COMMANDS[name])
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(list(argv))))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Bad input and missing assets print one clear line and exit 2.

    Set ``AU_FACE_DEBUG=1`` to see the full traceback instead.
    """
    from_shell = argv is None
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in COMMANDS:
            return run_command(args[0], args[1:])
        if not args or args[0] in ("-h", "--help"):
            _print_help()
            if not args:
                return 2
        return run_lightning(None if from_shell else args)
    except Exception as err:
        cause = user_error(err)
        if cause is None or os.environ.get("AU_FACE_DEBUG"):
            raise
        print(f"au-face: error: {cause}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("au-face: interrupted", file=sys.stderr)
        return 130


def user_error(err: BaseException) -> AUFaceError | None:
    """The :class:`AUFaceError` behind ``err`` (LightningCLI/jsonargparse wrap errors raised
    while instantiating classes), or None for a bug."""
    seen: set[int] = set()
    stack: list[BaseException] = [err]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, AUFaceError):
            return current
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]
        stack += [e for e in getattr(current, "exceptions", []) if isinstance(e, BaseException)]
    return None


def _print_help() -> None:
    print("usage: au-face {fit,validate,test,predict,reconstruct,preprocess,masks,evaluate} ...\n")
    print("  fit|validate|test|predict  train and evaluate with LightningCLI (--config configs/*.yaml)")
    for name, text in COMMANDS.items():
        print(f"  {name:<26} {text}")
    print()


if __name__ == "__main__":
    sys.exit(main())
