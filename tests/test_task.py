"""AUFaceTask through LightningCLI on a tiny generated synthetic set: fit, test, checkpoints, fine-tuning."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from au_face.cli import main
from au_face.data.datamodules.synthetic import SyntheticDataModule
from au_face.data.synthetic.config import SyntheticConfig
from au_face.geometry import GeometrySpec
from au_face.io.checkpoints import CheckpointError
from au_face.training.task import AUFaceTask

REPO = Path(__file__).resolve().parents[1]
TINY = ["--data.init_args.batch_size=2", "--data.init_args.generator.num_identities=[2, 1, 1]",
        "--data.init_args.generator.sequences_per_identity=1", "--data.init_args.generator.frames_per_sequence=24",
        "--data.init_args.generator.image_size=64", "--model.init_args.net.dim=32", "--model.init_args.net.token_hidden=32"]  # fmt: skip


def cli_args(command: str, ict_npz: Path, data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        command, "--config", str(REPO / "configs" / "synthetic.yaml"), f"--run_dir={run_dir}",
        f"--data.init_args.root={data_root}", f"--data.init_args.ict_path={ict_npz}", f"--geometry.ict_path={ict_npz}",
        "--trainer.enable_progress_bar=false", *TINY, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ict_npz: Path) -> tuple[Path, Path, Path]:
    """Fit two short epochs through the CLI; returns (checkpoint, data root, run dir)."""
    root = tmp_path_factory.mktemp("synthetic")
    run = tmp_path_factory.mktemp("run")
    code = main(cli_args("fit", ict_npz, root, run, "--trainer.max_epochs=2", "--trainer.max_time=null"))
    assert code == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return ckpt, root, run


def test_fit_fast_dev_run_through_the_cli(tmp_path: Path, ict_npz: Path) -> None:
    assert main(cli_args("fit", ict_npz, tmp_path / "data", tmp_path / "run", "--trainer.fast_dev_run=true")) == 0


def test_test_through_the_cli_logs_per_au_f1_and_smoothness(trained, tmp_path: Path, ict_npz: Path) -> None:
    ckpt, root, _ = trained
    run = tmp_path / "test_run"
    assert main(cli_args("test", ict_npz, root, run, f"--ckpt_path={ckpt}")) == 0
    metrics_files = list(run.rglob("metrics.csv"))
    assert metrics_files, "CSVLogger wrote no metrics"
    with open(metrics_files[0]) as fh:
        rows = list(csv.DictReader(fh))
    logged = {k for row in rows for k, v in row.items() if v}
    for key in ("test/f1_mean", "test/f1/AU12", "test/accel_coarse", "test/accel_refined", "test/accel_ratio", "test/vertex_error_refined",
                "test/vertex_error_gaussian", "test/accel_gaussian", "test/vertex_error_one_euro", "test/accel_one_euro"):  # fmt: skip
        assert key in logged, f"{key} not logged; got {sorted(logged)}"
    f1 = float(next(row["test/f1_mean"] for row in rows if row.get("test/f1_mean")))
    assert 0.0 <= f1 <= 1.0
    value = {k: float(v) for row in rows for k, v in row.items() if v}
    assert value["test/accel_gaussian"] < value["test/accel_coarse"], "the Gaussian baseline smooths the coarse clips"


def test_filter_baselines_choose_sigma_on_validation() -> None:
    from types import SimpleNamespace

    from au_face.evaluation.callbacks import FilterBaselineCallback

    callback = FilterBaselineCallback(sigmas=(0.5, 3.0), one_euro=((1.0, 0.0), (8.0, 0.0)))
    g = torch.Generator().manual_seed(0)
    gt = torch.randn(2, 1, 5, 3, generator=g).expand(2, 12, 5, 3).contiguous()  # a face held still
    noisy = gt + 0.05 * torch.randn(gt.shape, generator=g)
    module = SimpleNamespace(device=torch.device("cpu"), trainer=SimpleNamespace(validating=True))
    callback._start(module)
    callback._batch({"coarse": noisy, "valid": torch.ones(2, 12, dtype=torch.bool), "gt": gt})
    out = callback.results(callback.metrics, module)
    assert callback.sigma == 3.0 and float(out["gaussian_sigma"]) == 3.0, (
        "noise on a still face wants the wide Gaussian"
    )
    assert callback.euro == (1.0, 0.0)
    assert out["vertex_error_gaussian"] < out["vertex_error_one_euro"]


def test_checkpoint_round_trip_restores_geometry_and_outputs(trained, ict_npz: Path) -> None:
    ckpt, root, _ = trained
    task = AUFaceTask.load_from_checkpoint(ckpt, map_location="cpu").eval()
    assert task.model.net.tokenizer.masks.abs().sum() > 0, "masks were not stored in the checkpoint"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    for key, value in task.state_dict().items():
        assert torch.equal(value, state[key]), key
    dm = SyntheticDataModule(
        root=str(root), ict_path=str(ict_npz), generator=_tiny_config(), batch_size=2, geometry=task.geometry
    )
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        a, b = task(batch), AUFaceTask.load_from_checkpoint(ckpt, map_location="cpu").eval()(batch)
    assert torch.allclose(a["logits"], b["logits"]) and torch.allclose(a["refined"], b["refined"])


def test_fine_tuning_with_a_new_au_list_loads_the_trunk_and_reinitialises_the_head(trained) -> None:
    ckpt, _, _ = trained
    source = AUFaceTask.load_from_checkpoint(ckpt, map_location="cpu")
    hp = dict(source.hparams)
    hp.update(geometry=GeometrySpec(aus=[1, 2, 25], file=str(ckpt)), init_checkpoint=str(ckpt), freeze=["tokenizer"])
    task = AUFaceTask(**hp)
    loaded, skipped = task.load_trunk(ckpt)
    assert torch.equal(task.model.net.tokenizer.first, source.model.net.tokenizer.first)
    assert torch.equal(
        task.model.net.temporal.encoder.layers[0].linear1.weight,
        source.model.net.temporal.encoder.layers[0].linear1.weight,
    )
    assert task.model.net.au_weight.shape == (3, hp["net"]["dim"])
    assert torch.equal(task.model.net.tokenizer.masks[1], source.model.net.tokenizer.masks[source.aus.index(2)]), (
        "known AUs keep their masks"
    )
    assert "model.net.au_weight" in skipped and "model.net.tokenizer.first" in loaded
    assert task(_batch(task, 3)) is not None
    task._apply_freeze()
    assert not task.model.net.tokenizer.first.requires_grad and task.model.net.au_weight.requires_grad


def test_same_au_list_loads_the_head_too(trained) -> None:
    ckpt, _, _ = trained
    source = AUFaceTask.load_from_checkpoint(ckpt, map_location="cpu")
    task = AUFaceTask(**{**source.hparams, "geometry": source.geometry})
    task.load_trunk(ckpt)
    assert torch.equal(task.model.net.au_weight, source.model.net.au_weight)


def test_a_checkpoint_with_an_appearance_head_loads_with_it_and_fine_tuning_starts_without(
    trained, tmp_path: Path
) -> None:
    ckpt, _, _ = trained
    stored = torch.load(ckpt, map_location="cpu", weights_only=False)
    source = AUFaceTask.load_from_checkpoint(ckpt, map_location="cpu")
    head = source.model.add_appearance_head(12)
    head.weight.copy_(torch.randn_like(head.weight))
    stored["state_dict"].update({f"model.appearance.{k}": v for k, v in head.state_dict().items()})
    with_head = tmp_path / "with_head.ckpt"
    torch.save(stored, with_head)

    task = AUFaceTask.load_from_checkpoint(with_head, map_location="cpu")  # strict: the head's keys must fit
    assert task.model.appearance is not None and torch.equal(task.model.appearance.weight, head.weight)
    assert "appearance" in task.frame_inputs
    fresh = AUFaceTask(**{**source.hparams, "geometry": source.geometry})
    loaded, _ = fresh.load_trunk(with_head)
    assert fresh.model.appearance is None and not any("appearance" in key for key in loaded)


def test_bad_checkpoints_give_clear_errors(tmp_path: Path, trained) -> None:
    ckpt, _, _ = trained
    task = AUFaceTask.load_from_checkpoint(ckpt, map_location="cpu")
    with pytest.raises(CheckpointError, match="not found"):
        task.load_trunk(tmp_path / "missing.ckpt")
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        task.load_trunk(text)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not an au_face"):
        task.load_trunk(other)


def test_unknown_au_in_the_config_is_a_clear_cli_error(tmp_path: Path, ict_npz: Path, capsys) -> None:
    code = main(
        cli_args(
            "fit", ict_npz, tmp_path / "d", tmp_path / "r", "--geometry.aus=[AU12, AU99]", "--trainer.fast_dev_run=true"
        )
    )
    assert code == 2
    assert "unknown AU" in capsys.readouterr().err


def _tiny_config() -> SyntheticConfig:
    return SyntheticConfig(num_identities=(2, 1, 1), sequences_per_identity=1, frames_per_sequence=24, image_size=64)


def _batch(task: AUFaceTask, k: int) -> dict[str, torch.Tensor]:
    v = task.geometry.num_vertices
    return {
        "vertices": torch.randn(1, 4, v, 3),
        "valid": torch.ones(1, 4, dtype=torch.bool),
        "crops": torch.rand(1, 4, 3, 64, 64),
        "labels": torch.zeros(1, 4, k, dtype=torch.int8),
    }


def test_refine_whole_video_blends_windows_and_starts_as_identity(trained, ict_npz: Path) -> None:
    from au_face.coarse.base import CoarseFrames

    ckpt, root, _ = trained
    trained_task = AUFaceTask.load_from_checkpoint(ckpt, map_location="cpu")
    dm = SyntheticDataModule(
        root=str(root), ict_path=str(ict_npz), generator=_tiny_config(), geometry=trained_task.geometry
    )
    coarse = CoarseFrames.load(dm.records("test")[0].coarse_path)
    coarse.valid[5] = False
    out = trained_task.refine(coarse)
    assert out.vertices.shape == coarse.vertices.shape and out.au_probs.shape == (len(coarse), 12)
    assert ((out.au_probs >= 0) & (out.au_probs <= 1)).all()
    assert torch.equal(out.vertices[5], coarse.vertices[5]), "a frame without a face must keep its coarse mesh"
    fresh = AUFaceTask(**{**trained_task.hparams, "geometry": trained_task.geometry})
    fresh.load_state_dict(trained_task.state_dict())
    torch.nn.init.zeros_(fresh.model.net.expression_head[-1].weight)
    torch.nn.init.zeros_(fresh.model.net.expression_head[-1].bias)
    for mix in (fresh.model.net.smoother.au_mix, fresh.model.net.smoother.rest_mix):  # all weight on sigma = 0
        torch.nn.init.zeros_(mix.weight)
        mix.bias.data = torch.tensor([100.0, 0.0, 0.0, 0.0])
    assert torch.allclose(fresh.refine(coarse).vertices, coarse.vertices, atol=1e-5), (
        "no correction and no smoothing must return the coarse meshes"
    )
    mix.bias.data = torch.tensor([0.0, 100.0, 0.0, 0.0])  # the rest of the face smoothed with sigma = 1
    assert not torch.allclose(fresh.refine(coarse).vertices, coarse.vertices, atol=1e-5)
    with pytest.raises(CheckpointError, match="topology"):
        trained_task.refine(coarse.with_fields(topology="mediapipe"))
