"""examples/finetune_new_aus.py: a checkpoint trained on one AU list fine-tuned to a folder dataset with another."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from au_face.cli import main
from au_face.geometry import GeometrySpec
from au_face.training.task import AUFaceTask
from dataset_fixtures import make_folder_labels, tiny_geometry, write_coarse_cache

REPO = Path(__file__).resolve().parents[1]
NAMES = ["train/anna_1", "train/bob_1", "val/carl_1", "test/dora_1"]
TINY = ["--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false", "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1", "--data.init_args.num_workers=0", "--data.init_args.batch_size=2"]  # fmt: skip


def _load_example():
    spec = importlib.util.spec_from_file_location("finetune_new_aus", REPO / "examples" / "finetune_new_aus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Videos labelled with AU01, AU06, AU12 and AU25 (train/val/test sub-folders) and their cache."""
    root = tmp_path_factory.mktemp("videos")
    for name in NAMES:
        make_folder_labels(
            root / Path(name).parent, (Path(name).name,), ("AU01", "AU06", "AU12", "AU25"), num_frames=12
        )
    write_coarse_cache(root / "cache", root, [root / f"{n}.mp4" for n in NAMES], 12)
    return root


@pytest.fixture(scope="module")
def source_ckpt(videos: Path, tmp_path_factory) -> Path:
    """A small model trained on AU06 and AU12 only."""
    run = tmp_path_factory.mktemp("source")
    geometry = tiny_geometry(videos / "cache", ["AU06", "AU12"])
    args = [
        "fit", "--config", str(REPO / "configs" / "folder.yaml"), f"--run_dir={run}", "--trainer.max_epochs=1",
        f"--geometry={json.dumps(asdict(geometry))}", f"--data.init_args.video_dir={videos}",
        f"--data.init_args.cache_dir={videos / 'cache'}",
        '--model.init_args.net={"dim": 16, "token_hidden": 16, "heads": 2, "spatial_layers": 1, "temporal_layers": 1, "modality": "mesh"}',
        *TINY,
    ]  # fmt: skip
    assert main(args) == 0
    return run / "checkpoints" / "last.ckpt"


def test_finetune_example_gives_a_head_for_the_new_aus(videos: Path, source_ckpt: Path, tmp_path: Path, capsys) -> None:
    example = _load_example()
    out = tmp_path / "finetuned"
    args = [
        "--ckpt",
        str(source_ckpt),
        "--videos",
        str(videos),
        "--cache",
        str(videos / "cache"),
        "--aus",
        "AU01",
        "AU25",
        "AU06",
        "--freeze",
        "tokenizer",
        "spatial",
        "--epochs",
        "1",
        "--out",
        str(out),
        *TINY,
    ]  # fmt: skip  (the data's own basis would be 32 PCA modes: the checkpoint's 8 are used)
    ckpt = example.main(args)
    printed = capsys.readouterr().out
    assert "test/dora_1: 12 frames" in printed
    assert [line.split()[0] for line in printed.splitlines() if line.startswith("  AU")] == ["AU01", "AU25", "AU06"]

    source = AUFaceTask.load_from_checkpoint(source_ckpt, map_location="cpu")
    tuned = AUFaceTask.load_from_checkpoint(ckpt, map_location="cpu")
    assert tuned.aus == [1, 25, 6] and tuned.hparams.net == source.hparams.net
    assert tuned.model.net.au_weight.shape[0] == 3
    assert torch.equal(tuned.model.net.expression.basis, source.model.net.expression.basis), (
        "the geometry comes from the checkpoint"
    )
    assert torch.equal(tuned.model.net.tokenizer.masks[2], source.model.net.tokenizer.masks[0]), (
        "AU06's mask is the checkpoint's"
    )
    # the frozen trunk is the source's; the temporal part was trained further
    assert torch.equal(tuned.model.net.tokenizer.first, source.model.net.tokenizer.first)
    assert torch.equal(tuned.model.net.spatial.state_dict()["encoder.layers.0.linear1.weight"],
                       source.model.net.spatial.state_dict()["encoder.layers.0.linear1.weight"])  # fmt: skip
    assert not torch.equal(
        tuned.model.net.temporal.encoder.layers[0].linear1.weight,
        source.model.net.temporal.encoder.layers[0].linear1.weight,
    )


def test_finetune_example_reports_a_missing_checkpoint(videos: Path, tmp_path: Path) -> None:
    example = _load_example()
    with pytest.raises(SystemExit, match="checkpoint not found"):
        example.main(
            ["--ckpt", str(tmp_path / "none.ckpt"), "--videos", str(videos), "--cache", str(videos), "--aus", "AU01"]
        )


def test_freezing_keeps_new_au_weights_trainable_and_refuses_other_architectures(source_ckpt: Path) -> None:
    source = AUFaceTask.load_from_checkpoint(source_ckpt, map_location="cpu")
    hparams = dict(source.hparams)
    hparams.update(
        geometry=GeometrySpec(aus=[1, 25], file=str(source_ckpt)), freeze=["tokenizer", "spatial", "temporal"]
    )
    task = AUFaceTask(**hparams)
    loaded, skipped = task.load_trunk(source_ckpt)
    task._apply_freeze()
    assert "model.net.spatial.au_embedding" in skipped, "the AU embeddings belong to the old AU list"
    assert task.model.net.spatial.au_embedding.requires_grad, "re-initialised AU weights must train"
    assert not task.model.net.spatial.encoder.layers[0].linear1.weight.requires_grad
    hparams.update(net={**source.hparams.net, "dim": 2 * source.hparams.net["dim"]}, freeze=None)
    with pytest.raises(Exception, match="different architecture"):
        AUFaceTask(**hparams).load_trunk(source_ckpt)
