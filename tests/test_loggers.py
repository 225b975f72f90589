"""The metric callbacks log to every attached logger: CSV, TensorBoard and wandb (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_task import cli_args


def test_metrics_reach_tensorboard_and_offline_wandb(tmp_path: Path, ict_npz: Path, monkeypatch) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from au_face.cli import main

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = tmp_path / "run"
    args = cli_args(
        "fit",
        ict_npz,
        tmp_path / "data",
        run,
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1",
        "--trainer.num_sanity_val_steps=0",
    )
    args += [
        "--trainer.logger+=lightning.pytorch.loggers.TensorBoardLogger", f"--trainer.logger.save_dir={run / 'tb'}",
        "--trainer.logger+=lightning.pytorch.loggers.WandbLogger", "--trainer.logger.offline=true",
        f"--trainer.logger.save_dir={tmp_path}", "--trainer.logger.project=au_face_test",
    ]  # fmt: skip
    assert main(args) == 0
    events = list((run / "tb").rglob("events.out.tfevents*"))
    assert events, "TensorBoard wrote no event file"
    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert "val/f1_mean" in tags and "val/accel_ratio" in tags, tags
    # per-AU F1 is logged where defined (an AU never labelled nor predicted in one batch has none)
    assert any(tag.startswith("val/f1/AU") for tag in tags), tags
    offline_runs = list(tmp_path.rglob("offline-run-*"))
    assert offline_runs, "wandb wrote no offline run"
    summary = next(tmp_path.rglob("wandb-summary.json"), None)
    if summary is not None:  # written when the run finishes
        assert "val/f1_mean" in summary.read_text()
