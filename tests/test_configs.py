"""Every shipped experiment config parses, composes its parts, stops on epochs and keeps last.ckpt."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from au_face.cli import main
from au_face.commands.lightning import default_run_dir

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
PARTS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*/*.yaml"))


def printed_config(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_parses_and_stops_on_epochs(path: Path, capsys) -> None:
    config = printed_config(capsys, "--config", str(path))
    trainer = config["trainer"]
    assert trainer["max_epochs"] and trainer.get("max_time") is None, "training stops on epochs, not wall time"
    checkpoints = [c["init_args"] for c in trainer["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    assert any(c.get("save_last") and not c.get("monitor") for c in checkpoints), (
        "last.ckpt must be the last finished epoch"
    )
    assert all(c["dirpath"] == "{run_dir}/checkpoints" for c in checkpoints), "checkpoints go to the run folder"
    assert config["geometry"]["topology"] in ("mediapipe", "ict", "flame"), "one geometry, given to model and data"


def test_every_part_is_used_by_an_experiment() -> None:
    used = {
        part
        for path in CONFIGS
        for part in yaml.safe_load(path.read_text()).values()
        if isinstance(part, str) and part.endswith(".yaml")
    }
    assert {str(p.relative_to(p.parents[1])) for p in PARTS} == used


def test_a_fold_is_one_key_and_names_its_run_folder(capsys) -> None:
    bp4d = Path(__file__).resolve().parents[1] / "configs" / "bp4d.yaml"
    one, two = (
        printed_config(capsys, "--config", str(bp4d)),
        printed_config(capsys, "--config", str(bp4d), "--data.init_args.fold=2"),
    )
    differ = {k for k in one["data"]["init_args"] if one["data"]["init_args"][k] != two["data"]["init_args"][k]}
    assert differ == {"fold"} and one["model"] == two["model"] and one["trainer"] == two["trainer"]
    from jsonargparse import Namespace

    config = Namespace(config=[bp4d], data=Namespace(init_args=Namespace(fold=2)))
    assert default_run_dir(config) == str(Path("outputs") / "bp4d_fold2")


def test_model_and_data_share_geometry_clips_and_reference_and_write_into_the_run_folder(
    ict_npz: Path, tmp_path: Path
) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from au_face.commands.lightning import AUFaceCLI
    from au_face.data.datamodules.base import SequenceDataModule
    from au_face.training.task import AUFaceTask

    default = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
    args = ["--config", str(default), f"--geometry.ict_path={ict_npz}", f"--data.init_args.ict_path={ict_npz}",
            "--data.init_args.clip_length=8", f"--data.init_args.root={tmp_path / 'data'}", f"--run_dir={tmp_path / 'run'}"]  # fmt: skip
    cli = AUFaceCLI(AUFaceTask, SequenceDataModule, subclass_mode_model=True, subclass_mode_data=True, run=False, args=args,
                    save_config_callback=None, auto_configure_optimizers=False)  # fmt: skip
    model, data = cli.model, cli.datamodule
    assert model.geometry.content_hash == data.geometry.content_hash and model.aus == data.aus
    assert model.clip_length == data.clip_length == 8 and model.hparams.reference == data.reference == "neutral"
    assert {c.dirpath for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)} == {
        str(tmp_path / "run" / "checkpoints")
    }
    assert cli.trainer.logger.save_dir == str(tmp_path / "run")


def test_default_config_trains_the_shipped_model_settings() -> None:
    from au_face.io.checkpoints import default_checkpoint, load_checkpoint

    configs = Path(__file__).resolve().parents[1] / "configs"
    experiment = yaml.safe_load((configs / "default.yaml").read_text())
    model = yaml.safe_load((configs / experiment["model"]).read_text())["init_args"]
    data = yaml.safe_load((configs / experiment["data"]).read_text())["init_args"]
    shipped = load_checkpoint(default_checkpoint())["hyper_parameters"]
    assert experiment["geometry"] == {"topology": "mediapipe", "aus": "default"}
    assert data["reference"] == shipped["reference"] == "neutral" and data["generator"]["coarse_source"] == "mediapipe"

    def plain(net: dict) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in net.items()}

    assert plain({k: shipped["net"][k] for k in model["net"]}) == plain(model["net"])
    assert {k: shipped["loss"][k] for k in model["loss"]} == model["loss"] and model["calibrated"] == shipped[
        "calibrated"
    ]


def test_run_configs_saved_before_the_re_layout_still_load(capsys, tmp_path: Path) -> None:
    """``class_path: au_face.tasks.AUFaceTask`` (au_face 0.1) resolves through the deprecated alias for one release."""
    default = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
    old_model = tmp_path / "model.yaml"
    model = yaml.safe_load((default.parent / "model" / "default.yaml").read_text())
    model["class_path"] = "au_face.tasks.AUFaceTask"
    old_model.write_text(yaml.safe_dump(model))
    with pytest.warns(FutureWarning, match="au_face.training.task.AUFaceTask"):
        config = printed_config(capsys, "--config", str(default), "--model", str(old_model))
    printed = config["model"]["init_args"]["net"]
    assert {key: printed[key] for key in model["init_args"]["net"]} == model["init_args"]["net"]
    import au_face.tasks
    from au_face.training.task import AUFaceTask

    with pytest.warns(FutureWarning):
        assert au_face.tasks.AUFaceTask is AUFaceTask
    with pytest.raises(AttributeError):
        au_face.tasks.NoSuchThing  # noqa: B018


@pytest.mark.parametrize("name", ["default.yaml", "simreal.yaml"])
def test_the_synthetic_benchmarks_read_the_synthetic_part_of_a_training_config(name: str) -> None:
    """``bench_simreal.load_datamodule`` (also ``bench_ablation``'s) gives the synthetic sequences of a
    config, photo-mixed (the default's) or not: both stages' configs name the same synthetic data."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from au_face.data.datamodules.mixed import SyntheticPhotoDataModule
    from au_face.data.datamodules.synthetic import SyntheticDataModule
    from bench_simreal import load_datamodule

    dm = load_datamodule(Path(__file__).resolve().parents[1] / "configs" / name)
    assert type(dm) is SyntheticDataModule and not isinstance(dm, SyntheticPhotoDataModule)
    assert dm.root == Path("outputs/simreal") and dm.generator.coarse_source == "mediapipe"
    assert tuple(dm.generator.num_identities) == (90, 8, 12) and dm.generator.frames_per_sequence == 48
