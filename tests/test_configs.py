"""Every shipped config parses, stops on epochs (never wall time) and keeps last.ckpt every epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from au_face.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_parses_and_stops_on_epochs(path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    trainer = config["trainer"]
    assert trainer["max_epochs"] and trainer.get("max_time") is None, "training stops on epochs, not wall time"
    checkpoints = [c["init_args"] for c in trainer["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    assert any(c.get("save_last") and not c.get("monitor") for c in checkpoints), "last.ckpt must be the last finished epoch"


def test_default_config_trains_the_shipped_model_settings() -> None:
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "default.yaml").read_text())
    data, model = config["data"]["init_args"], config["model"]["init_args"]
    assert data["aus"] == "default" and data["reference"] == "neutral" and data["topology"] == "mediapipe"
    assert data["generator"]["coarse_source"] == "mediapipe" and model["modality"] == "mesh"
