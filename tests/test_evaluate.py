"""``au-face evaluate`` over per-fold metric CSVs: the papers' table layout, averages, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from au_face.cli import main
from au_face.commands.evaluate import EvaluationError, FoldResult, fold_csv, fold_table, read_fold_csv


def _lightning_csv(path: Path, au1: float, au2: float) -> Path:
    """A CSVLogger metrics.csv: validation rows first, the test row last."""
    path.write_text(
        "epoch,step,val/f1/AU01,val/f1/AU02,test/f1/AU01,test/f1/AU02,test/f1_mean\n"
        "0,9,0.9,0.9,,,\n"
        f"1,19,,,{au1},{au2},{(au1 + au2) / 2}\n"
    )
    return path


def test_read_fold_csv_takes_the_test_columns_of_the_last_row(tmp_path: Path) -> None:
    assert read_fold_csv(_lightning_csv(tmp_path / "m.csv", 0.5, 0.25)) == {1: 0.5, 2: 0.25}
    plain = tmp_path / "plain.csv"
    plain.write_text(fold_csv({4: 0.4, 6: math.nan}))
    got = read_fold_csv(plain)
    assert list(got) == [4, 6] and got[4] == pytest.approx(0.4) and math.isnan(got[6])


def test_fold_table_rows_are_folds_then_the_average(tmp_path: Path) -> None:
    header, rows = fold_table(
        [FoldResult("fold1", {1: 0.5, 2: 0.2}), FoldResult("fold2", {1: 0.7, 2: math.nan})], "Ours"
    )
    assert header == ["Fold", "AU1", "AU2", "Avg."]
    assert rows[0] == ["fold1", pytest.approx(50.0), pytest.approx(20.0), pytest.approx(35.0)]
    assert rows[2][0] == "Ours"
    assert rows[2][1:] == [pytest.approx(60.0), pytest.approx(20.0), pytest.approx(40.0)]  # NaN folds left out
    single = fold_table([FoldResult("validation", {1: 0.5})])[1]
    assert len(single) == 1  # one fold: no average row


def test_evaluate_prints_markdown_and_writes_csv(tmp_path: Path, capsys) -> None:
    files = [str(_lightning_csv(tmp_path / f"f{i}.csv", 0.1 * i, 0.2 * i)) for i in (1, 2, 3)]
    assert main(["evaluate", "--metrics", *files, "--out-dir", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "| Fold | AU1 | AU2 | Avg. |"
    assert printed[2] == "| fold1 | 10.0 | 20.0 | 15.0 |"
    assert printed[5] == "| **Avg.** | **20.0** | **40.0** | **30.0** |"
    csv_lines = (tmp_path / "out" / "table.csv").read_text().splitlines()
    assert csv_lines[-1] == "Avg.,20.00,40.00,30.00"


def test_evaluate_errors(tmp_path: Path, capsys) -> None:
    a = _lightning_csv(tmp_path / "a.csv", 0.5, 0.5)
    b = tmp_path / "b.csv"
    b.write_text("AU01,AU04\n0.5,0.5\n")
    with pytest.raises(EvaluationError, match="folds disagree on the AUs"):
        fold_table([FoldResult("a", read_fold_csv(a)), FoldResult("b", read_fold_csv(b))])
    b.write_text("AU01\n51.2\n")
    with pytest.raises(EvaluationError, match="not a fraction"):
        read_fold_csv(b)
    b.write_text("epoch,loss\n0,1\n")
    with pytest.raises(EvaluationError, match="no per-AU F1 columns"):
        read_fold_csv(b)
    assert main(["evaluate", "--metrics", str(a), str(tmp_path / "missing.csv")]) == 2
    assert "metrics file not found" in capsys.readouterr().err
    assert main(["evaluate", "--config", str(a), "--ckpt", "x", "y"]) == 2


def test_evaluator_builds_the_chosen_metric_callbacks_and_reads_f1_by_metric_name() -> None:
    from au_face.evaluation.callbacks import AUF1Callback, FilterBaselineCallback, MeshSmoothnessCallback
    from au_face.evaluation.evaluator import Evaluator

    assert [type(c) for c in Evaluator().callbacks()] == [AUF1Callback, MeshSmoothnessCallback, FilterBaselineCallback]
    only_f1 = Evaluator(metrics=["au_f1"], threshold=0.3).callbacks()
    assert len(only_f1) == 1 and only_f1[0].threshold == 0.3
    with pytest.raises(ValueError, match="unknown metrics"):
        Evaluator(metrics=["accuracy"])
    results = {"test/f1/AU01": 0.5, "test/f1/AU12": 0.25, "val/f1/AU02": 0.9, "test/f1_mean": 0.4}
    f1 = Evaluator.au_f1(results, [1, 2, 12])
    assert f1[1] == 0.5 and f1[12] == 0.25 and math.isnan(f1[2]), "AU02 was logged for validation only"
