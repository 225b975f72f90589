"""``au-face evaluate``: per-AU F1 over dataset folds as Markdown and CSV tables.

Two sources of per-fold results:

* ``--config configs/bp4d.yaml --folds 1 2 3``: run the test split of each fold (or of each of
  several configs) with its checkpoint (``--ckpt``: one per run, one for all, or by default each
  run's ``<run_dir>/checkpoints/best.ckpt``) and read per-AU F1 from ``trainer.test()``'s results
  by metric name (:meth:`au_face.evaluation.evaluator.Evaluator.au_f1`); a per-fold metrics CSV is written for each;
* ``--metrics a.csv b.csv c.csv``: per-fold CSVs written earlier, by this command or by
  Lightning's ``CSVLogger`` (columns such as ``test/f1/AU01``; the last row with values is used).

The table follows the layout of the AU-detection papers (JAA-Net, ME-GraphAU, and the paper this
package implements): one column per AU then ``Avg.``, F1 in percent; one row per fold and, for
several folds, an ``Avg.`` row of per-AU means over folds (the number the papers report).
"""

from __future__ import annotations

import argparse
import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from au_face.aus import au_label
from au_face.commands import path_arg
from au_face.errors import AUFaceError
from au_face.utils.files import atomic_write_text

_METRIC_COLUMN = re.compile(r"^(?:(?P<stage>test|val|validate)/)?(?:f1[/_])?au0*(?P<au>\d+)$", re.IGNORECASE)


class EvaluationError(AUFaceError, ValueError):
    """Per-fold results that cannot be read or do not fit together."""


@dataclass(frozen=True)
class FoldResult:
    """Per-AU F1 (fractions in [0, 1], NaN where undefined) of one fold."""

    name: str
    f1: dict[int, float]

    @property
    def mean(self) -> float:
        return _nan_mean(list(self.f1.values()))


def _nan_mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _to_float(cell: str, path: Path, column: str) -> float:
    if cell.strip() == "" or cell.strip().lower() == "nan":
        return math.nan
    try:
        value = float(cell)
    except ValueError:
        raise EvaluationError(f"{path}: column {column}: {cell!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise EvaluationError(f"{path}: column {column}: F1 {value:g} is not a fraction in [0, 1]")
    return value


def read_fold_csv(path: str | Path) -> dict[int, float]:
    """Per-AU F1 from a metrics CSV (``AU01``/``f1/AU01``/``test/f1/AU01`` columns, F1 as fractions)."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"metrics file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise EvaluationError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    found = {i: _METRIC_COLUMN.match(h) for i, h in enumerate(header)}
    matches = {i: m for i, m in found.items() if m}
    if not matches:
        raise EvaluationError(f"{path}: no per-AU F1 columns (such as 'AU01' or 'test/f1/AU01') in the header")
    stages = {(m.group("stage") or "").lower() for m in matches.values()}
    stage = "test" if "test" in stages else ("val" if "val" in stages else ("validate" if "validate" in stages else ""))
    columns = {int(m.group("au")): i for i, m in matches.items() if (m.group("stage") or "").lower() == stage}
    for row in reversed(rows[1:]):
        cells = [row[i].strip() if i < len(row) else "" for i in columns.values()]
        if any(cells):
            return {au: _to_float(cell, path, header[i]) for (au, i), cell in zip(columns.items(), cells)}
    raise EvaluationError(f"{path}: no row has per-AU F1 values")


def fold_table(results: list[FoldResult], average_name: str = "Avg.") -> tuple[list[str], list[list[str | float]]]:
    """Header and rows (F1 in percent): one row per fold, then the per-AU average over folds."""
    if not results:
        raise EvaluationError("no fold results to tabulate")
    aus = list(results[0].f1)
    for result in results[1:]:
        if list(result.f1) != aus:
            raise EvaluationError(
                f"folds disagree on the AUs: {results[0].name} has {_aus_text(aus)}, "
                f"{result.name} has {_aus_text(list(result.f1))}"
            )
    header = ["Fold", *(f"AU{au}" for au in aus), "Avg."]
    rows: list[list[str | float]] = [[r.name, *(100 * r.f1[au] for au in aus), 100 * r.mean] for r in results]
    if len(results) > 1:
        per_au = [_nan_mean([r.f1[au] for r in results]) for au in aus]
        rows.append([average_name, *(100 * v for v in per_au), 100 * _nan_mean(per_au)])
    return header, rows


def _aus_text(aus: list[int]) -> str:
    return ",".join(au_label(a) for a in aus)


def _fmt(value: str | float, digits: int, missing: str = "–") -> str:
    if isinstance(value, str):
        return value
    return missing if math.isnan(value) else f"{value:.{digits}f}"


def to_markdown(header: list[str], rows: list[list[str | float]]) -> str:
    """A Markdown table with one decimal (the papers' precision); the average row is bold."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|"]
    for i, row in enumerate(rows):
        cells = [_fmt(v, 1) for v in row]
        if i == len(rows) - 1 and len(rows) > 1:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(header: list[str], rows: list[list[str | float]]) -> str:
    """CSV of the same table (two decimals; undefined F1 left empty)."""
    lines = [",".join(header)] + [",".join(_fmt(v, 2, missing="") for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def fold_csv(f1: dict[int, float]) -> str:
    """A per-fold metrics CSV that :func:`read_fold_csv` reads back (``AU01,...`` fractions)."""
    header = [au_label(au) for au in f1] + ["f1_mean"]
    values = [f"{v:.6f}" for v in f1.values()] + [f"{_nan_mean(list(f1.values())):.6f}"]
    return ",".join(header) + "\n" + ",".join(values) + "\n"


def evaluate_checkpoint(
    config: Path, ckpt: Path | None, trainer_args: list[str], fold: int | None = None, taken: set[Path] | None = None
) -> dict[int, float]:
    """Test ``ckpt`` (default: the run's ``checkpoints/best.ckpt``, which must not be one of the
    ``taken`` ones) on the test split of ``config`` (of its ``fold``), as ``au-face test`` does;
    per-AU F1 (NaN where undefined)."""
    from au_face.commands.lightning import AUFaceCLI
    from au_face.data.datamodules.base import SequenceDataModule
    from au_face.evaluation.evaluator import Evaluator
    from au_face.training.task import AUFaceTask

    if not config.is_file():
        raise EvaluationError(f"config not found: {config}")
    fold_args = [] if fold is None else [f"--data.init_args.fold={fold}"]
    cli = AUFaceCLI(
        AUFaceTask,
        SequenceDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        args=["--config", str(config), "--trainer.logger=false", *fold_args, *trainer_args],
        save_config_callback=None,
        auto_configure_optimizers=False,
    )
    if ckpt is None:
        ckpt = Path(cli.config["run_dir"]) / "checkpoints" / "best.ckpt"
        if taken is not None and ckpt in taken:
            raise EvaluationError(
                f"two runs would both use {ckpt} (the config sets run_dir); give --ckpt, one per fold"
            )
        if taken is not None:
            taken.add(ckpt)
    if not ckpt.is_file():
        raise EvaluationError(f"checkpoint not found: {ckpt}")
    results = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=str(ckpt), verbose=False)[0]
    return Evaluator.au_f1(results, cli.datamodule.aus, "test")


def _runs(args: argparse.Namespace) -> list[tuple[Path, int | None]]:
    """(config or metrics file, fold) of each row."""
    if args.folds:
        if not args.config or len(args.config) != 1:
            raise EvaluationError("--folds goes with exactly one --config")
        return [(args.config[0], fold) for fold in args.folds]
    return [(path, None) for path in args.config or args.metrics]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``au-face evaluate``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config",
        nargs="+",
        type=path_arg,
        help="training configs (the test split is used); one per fold, or one with --folds",
    )
    source.add_argument("--metrics", nargs="+", type=path_arg, help="per-fold metrics CSVs written earlier")
    parser.add_argument(
        "--folds", nargs="+", type=int, help="with one --config: evaluate these folds (--data.init_args.fold)"
    )
    parser.add_argument(
        "--ckpt",
        nargs="+",
        type=path_arg,
        help="checkpoint per run, or one for all (default: each run's checkpoints/best.ckpt)",
    )
    parser.add_argument("--names", nargs="+", help="row names (default: fold1, fold2, ...)")
    parser.add_argument("--method", default="Avg.", help="name of the row averaged over folds (default: Avg.)")
    parser.add_argument("--out-dir", type=path_arg, default=None, help="write table.md, table.csv (and fold CSVs) here")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator for --config runs (default: auto)")
    parser.add_argument("--devices", default="1", help="Lightning devices for --config runs (default: 1)")


def run(args: argparse.Namespace) -> int:
    """Collect per-fold F1, print the Markdown table, write files under ``--out-dir``."""
    runs = _runs(args)
    names = args.names or [f"fold{fold}" if fold is not None else f"fold{i}" for i, (_, fold) in enumerate(runs, 1)]
    if len(names) != len(runs):
        raise EvaluationError(f"{len(names)} names for {len(runs)} folds")
    results = []
    if args.config:
        ckpts = args.ckpt or []
        if len(ckpts) not in (0, 1, len(runs)):
            raise EvaluationError(f"give one checkpoint, or one per run ({len(runs)}); got {len(ckpts)}")
        trainer_args = [f"--trainer.accelerator={args.accelerator}", f"--trainer.devices={args.devices}"]
        taken: set[Path] = set()
        for i, (config, fold) in enumerate(runs):
            ckpt = ckpts[i if len(ckpts) > 1 else 0] if ckpts else None
            f1 = evaluate_checkpoint(config, ckpt, trainer_args, fold, taken)
            if args.out_dir is not None:
                atomic_write_text(args.out_dir / f"{names[i]}_metrics.csv", fold_csv(f1))
            results.append(FoldResult(names[i], f1))
    else:
        if args.ckpt or args.folds:
            raise EvaluationError("--ckpt and --folds go with --config, not with --metrics")
        results = [FoldResult(name, read_fold_csv(path)) for name, (path, _) in zip(names, runs)]
    header, rows = fold_table(results, args.method)
    markdown = to_markdown(header, rows)
    print(markdown, end="")
    if args.out_dir is not None:
        atomic_write_text(args.out_dir / "table.md", markdown)
        atomic_write_text(args.out_dir / "table.csv", to_csv(header, rows))
    return 0
