"""A model on the sim-to-real held-out identities, beside the baselines a user would otherwise pick.

    python benchmarks/bench_simreal.py --ckpt CKPT [--config configs/default.yaml]

Whole test sequences (MediaPipe run on renders of held-out ICT identities, ground truth known) go
through the model with the same window stitching as `au-face reconstruct`. Printed tables:

1. AU F1 per AU: the model vs the analytic readout (`au_face.evaluation.baselines`), plus AU6 on frames without
   AU12 and AU12 on frames without AU6 (a co-occurrence must not stand in for visibility), single
   frames (S̄ from that frame alone) and sequences that hold one expression throughout.
2. Refinement vs coarse, a Gaussian filter (σ chosen on the validation split), a causal One-Euro
   filter (tuned on validation) and the Gaussian at the model's smoothness: vertex error raw, after
   similarity alignment and of the expression part (the headline), acceleration relative to ground
   truth's, error on the 10 % fastest frames and peak AU-region amplitude relative to ground truth's.
3. The refinement on the same sequences played 2 and 3 times faster (every 2nd or 3rd frame), beside the
   coarse meshes and two Gaussians: how much of a fast movement's peak it keeps.

With a config that mixes in photos (the default's), only its synthetic part is read.
"""

from __future__ import annotations

import argparse
import inspect
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from au_face import GeometrySpec, load_refiner
from au_face.aus import au_label
from au_face.coarse.base import CoarseFrames
from au_face.data.clips import load_sequence
from au_face.data.datamodules.mixed import SyntheticPhotoDataModule
from au_face.data.datamodules.synthetic import SyntheticDataModule
from au_face.data.synthetic.config import SyntheticConfig
from au_face.evaluation.baselines import analytic_readout, gaussian_filter, one_euro_filter
from au_face.evaluation.sequences import (
    aligned_error,
    expression_error,
    fastest_frames,
    mean_acceleration,
    peak_amplitudes,
    raw_error,
)
from au_face.geometry.basis import ict_expression_basis
from au_face.geometry.neutral import fit_shape_indices

SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
#: Paces of the speed table: every frame, every 2nd, every 3rd.
SPEEDS = (1, 2, 3)
ONE_EURO = [(c, b) for c in (0.5, 1.0, 2.0, 4.0) for b in (0.0, 0.5, 2.0, 8.0)]


@dataclass
class Sequence:
    name: str
    coarse: CoarseFrames
    gt: torch.Tensor
    gt_neutral: torch.Tensor
    labels: np.ndarray
    held: bool


def load_split(dm: SyntheticDataModule, split: str) -> list[Sequence]:
    out = []
    for record in dm.records(split):
        data = load_sequence(record)
        with np.load(record.gt_path) as z:
            activations = z["activations"]
        crops = {} if data.crops is None else {"crops": data.crops}  # for models with a video branch
        coarse = CoarseFrames.from_canonical(data.vertices, data.valid, dm.config.fps, "mediapipe", **crops)
        held = bool(activations.max() > 0 and np.allclose(activations, activations[:1]))
        out.append(Sequence(record.name, coarse, data.gt_vertices, data.gt_reference, record.labels, held))
    return out


def f1_scores(probs: np.ndarray, labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``[K]`` F1 at 0.5 over known labels of valid frames (NaN where an AU never occurs)."""
    pred = probs >= 0.5
    known = (labels >= 0) & valid[:, None]
    tp = (pred & (labels == 1) & known).sum(0)
    fp = (pred & (labels == 0) & known).sum(0)
    fn = (~pred & (labels == 1) & known).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((labels == 1).sum(0) > 0, 2 * tp / (2 * tp + fp + fn), np.nan)


def smooth_metrics(
    x: torch.Tensor, reference: torch.Tensor, seq: Sequence, masks: torch.Tensor, aligned: bool = True
) -> dict[str, float]:
    valid = seq.coarse.valid
    fast = fastest_frames(seq.gt, valid)
    gt_peak = peak_amplitudes(seq.gt, seq.gt_neutral, masks, valid)
    peak = peak_amplitudes(x, reference, masks, valid)
    moving = gt_peak > 0.1  # AU regions that really move in this sequence (vertex units)
    return {
        "raw": raw_error(x, seq.gt, valid),
        "aligned": aligned_error(x, seq.gt, valid) if aligned else float("nan"),
        "expression": expression_error(x, reference, seq.gt, seq.gt_neutral, valid),
        "accel": mean_acceleration(x, valid),
        "gt_accel": mean_acceleration(seq.gt, valid),
        "fast": expression_error(x, reference, seq.gt, seq.gt_neutral, fast),
        "amplitude": float((peak[moving] / gt_peak[moving]).mean()) if moving.any() else float("nan"),
    }


def average(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


def tune_baselines(task, sequences: list[Sequence], masks: torch.Tensor) -> tuple[float, tuple[float, float]]:
    """σ and One-Euro settings with the lowest expression error on ``sequences`` (validation)."""
    refs = [task.reference(s.coarse) for s in sequences]

    def score(filtered) -> float:
        return float(
            np.mean(
                [
                    expression_error(f, r, s.gt, s.gt_neutral, s.coarse.valid)
                    for f, r, s in zip(filtered, refs, sequences)
                ]
            )
        )

    sigma = min(
        SIGMAS, key=lambda sg: score([gaussian_filter(s.coarse.vertices, s.coarse.valid, sg) for s in sequences])
    )
    euro = min(
        ONE_EURO,
        key=lambda p: score([one_euro_filter(s.coarse.vertices, s.coarse.valid, s.coarse.fps, *p) for s in sequences]),
    )
    return sigma, euro


def single_frame_probs(task, seq: Sequence, frames: np.ndarray) -> np.ndarray:
    """AU probabilities of frames seen alone (S̄ from that frame, as for a still image)."""
    out = []
    for t in frames:
        alone = seq.coarse.slice(int(t), int(t) + 1)
        out.append(task.refine(alone).au_probs[0].numpy())
    return np.stack(out)


def load_datamodule(config: Path) -> SyntheticDataModule:
    """The sim-to-real datamodule of a training config (its data part, with its geometry); of a config
    that mixes in photos (:class:`SyntheticPhotoDataModule`, the default's), its synthetic part."""
    experiment = yaml.safe_load(config.read_text())
    data_args = yaml.safe_load((config.parent / experiment["data"]).read_text())["init_args"]
    photo_only = set(inspect.signature(SyntheticPhotoDataModule.__init__).parameters) - {"self", "kwargs"}
    data_args = {name: value for name, value in data_args.items() if name not in photo_only}
    generator = SyntheticConfig(**data_args.pop("generator"))
    return SyntheticDataModule(**data_args, generator=generator, geometry=GeometrySpec(**experiment["geometry"]))


def equal_smoothness_error(
    rows: list[dict[str, float]], sigma_rows: dict[float, list[dict[str, float]]]
) -> tuple[float, float]:
    """Expression error of the Gaussian whose acceleration equals that of ``rows`` (interpolated over σ), and that σ."""
    table = {s: average(r) for s, r in sigma_rows.items()}
    accels = np.array([table[s]["accel"] for s in SIGMAS])
    errors = np.array([table[s]["expression"] for s in SIGMAS])
    order = np.argsort(accels)
    accel = average(rows)["accel"]
    return float(np.interp(accel, accels[order], errors[order])), float(
        np.interp(accel, accels[order], np.array(SIGMAS)[order])
    )


def quick_summary(task, test: list[Sequence], masks: torch.Tensor) -> dict[str, float]:
    """Mean AU F1 and the refinement figures of one model (no alignment, no single frames): the ablation's row."""
    probs, labels, valid, rows = [], [], [], []
    sigma_rows = {s: [] for s in SIGMAS}
    for seq in test:
        ref = task.reference(seq.coarse)
        out = task.refine(seq.coarse)
        probs.append(out.au_probs.numpy())
        labels.append(seq.labels)
        valid.append(seq.coarse.valid.numpy())
        rows.append(smooth_metrics(out.vertices, ref, seq, masks, aligned=False))
        for s in SIGMAS:
            sigma_rows[s].append(
                smooth_metrics(
                    gaussian_filter(seq.coarse.vertices, seq.coarse.valid, s), ref, seq, masks, aligned=False
                )
            )
    m = average(rows)
    matched, _ = equal_smoothness_error(rows, sigma_rows)
    f1 = f1_scores(np.concatenate(probs), np.concatenate(labels), np.concatenate(valid))
    return {"f1": float(np.nanmean(f1)), "expression": m["expression"], "vs_gaussian": m["expression"] / matched,
            "accel": m["accel"] / m["gt_accel"], "amplitude": m["amplitude"]}  # fmt: skip


def faster(seq: Sequence, stride: int) -> Sequence:
    """``seq`` played ``stride`` times faster: every ``stride``-th frame."""
    c = seq.coarse
    coarse = CoarseFrames.from_canonical(c.vertices[::stride], c.valid[::stride], c.fps, c.topology)
    return Sequence(seq.name, coarse, seq.gt[::stride], seq.gt_neutral, seq.labels[::stride], seq.held)


def print_speed_table(
    task, test: list[Sequence], masks: torch.Tensor, sigma: float, at_own_pace: dict[str, dict[str, float]]
) -> None:
    """The refinement on the test sequences at 2 and 3 times their pace (speech moves the lips faster
    than the synthetic AUs move), beside the coarse meshes and Gaussians; ``at_own_pace``: the same
    methods' averaged figures at 1×, already measured."""
    print("\n## Refinement on faster motion: every 2nd or 3rd frame of the same sequences\n")
    print("| pace | method | expression error | acceleration / ground truth | peak AU amplitude / ground truth |")
    print("|---|---|---|---|---|")
    for stride in SPEEDS:
        table = at_own_pace
        if stride > 1:
            rows: dict[str, list[dict[str, float]]] = {name: [] for name in at_own_pace}
            for seq in (faster(s, stride) for s in test):
                c, ref = seq.coarse, task.reference(seq.coarse)
                rows["coarse"].append(smooth_metrics(c.vertices, ref, seq, masks, aligned=False))
                rows["refined"].append(smooth_metrics(task.refine(c).vertices, ref, seq, masks, aligned=False))
                for name, s in (("Gaussian σ=1", 1.0), (f"Gaussian σ={sigma:g} (val)", sigma)):
                    rows[name].append(
                        smooth_metrics(gaussian_filter(c.vertices, c.valid, s), ref, seq, masks, aligned=False)
                    )
            table = {name: average(rs) for name, rs in rows.items()}
        for name, m in table.items():
            print(
                f"| {stride}× | {name} | {m['expression']:.4f} | {m['accel'] / m['gt_accel']:.2f} | {m['amplitude']:.2f} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=Path("configs/default.yaml"))
    args = parser.parse_args()
    start = time.perf_counter()
    torch.set_grad_enabled(False)
    dm = load_datamodule(args.config)
    task = load_refiner(args.ckpt)
    masks = torch.as_tensor(dm.geometry.masks, dtype=torch.float32)
    names = ict_expression_basis(dm.ict_model)[1]
    shape_names = [names[i] for i in fit_shape_indices(names)]
    aus = task.aus
    idx = {a: k for k, a in enumerate(aus)}

    sigma, euro = tune_baselines(task, load_split(dm, "val"), masks)
    test = load_split(dm, "test")
    model_probs, readout_probs, labels, valid = [], [], [], []
    rows: dict[str, list[dict[str, float]]] = {
        "coarse": [],
        "refined": [],
        f"Gaussian σ={sigma:g} (val)": [],
        f"One-Euro {euro} (val)": [],
    }
    sigma_rows = {s: [] for s in SIGMAS}
    single_p, single_l, held_p, held_l, held_v = [], [], [], [], []
    rng = np.random.default_rng(0)
    for seq in test:
        coarse, v = seq.coarse, seq.coarse.valid
        ref = task.reference(coarse)
        out = task.refine(coarse)
        model_probs.append(out.au_probs.numpy())
        readout_probs.append(analytic_readout(task.neutral, coarse.vertices, v, aus, shape_names).nan_to_num(0).numpy())
        labels.append(seq.labels)
        valid.append(v.numpy())
        rows["coarse"].append(smooth_metrics(coarse.vertices, ref, seq, masks))
        rows["refined"].append(smooth_metrics(out.vertices, ref, seq, masks))
        rows[f"Gaussian σ={sigma:g} (val)"].append(
            smooth_metrics(gaussian_filter(coarse.vertices, v, sigma), ref, seq, masks)
        )
        rows[f"One-Euro {euro} (val)"].append(
            smooth_metrics(one_euro_filter(coarse.vertices, v, coarse.fps, *euro), ref, seq, masks)
        )
        for s in SIGMAS:
            sigma_rows[s].append(smooth_metrics(gaussian_filter(coarse.vertices, v, s), ref, seq, masks))
        frames = np.sort(rng.choice(np.flatnonzero(v.numpy()), size=min(6, int(v.sum())), replace=False))
        single_p.append(single_frame_probs(task, seq, frames))
        single_l.append(seq.labels[frames])
        if seq.held:
            held_p.append(out.au_probs.numpy())
            held_l.append(seq.labels)
            held_v.append(v.numpy())

    probs, readout, lab, val = (np.concatenate(x) for x in (model_probs, readout_probs, labels, valid))
    f1_model, f1_readout = f1_scores(probs, lab, val), f1_scores(readout, lab, val)
    f1_single = f1_scores(
        np.concatenate(single_p), np.concatenate(single_l), np.ones(sum(len(x) for x in single_l), bool)
    )
    f1_held = (
        f1_scores(np.concatenate(held_p), np.concatenate(held_l), np.concatenate(held_v))
        if held_p
        else np.full(len(aus), np.nan)
    )
    print(f"## AU F1 on {len(test)} held-out sequences ({int(val.sum())} frames), threshold 0.5\n")
    print(
        "| AU | model | analytic readout | model, single frames | model, held-expression sequences |\n|---|---|---|---|---|"
    )
    for k, au in enumerate(aus):
        print(f"| {au_label(au)} | {f1_model[k]:.3f} | {f1_readout[k]:.3f} | {f1_single[k]:.3f} | {f1_held[k]:.3f} |")
    print(
        f"| **mean** | **{np.nanmean(f1_model):.3f}** | {np.nanmean(f1_readout):.3f} | {np.nanmean(f1_single):.3f} | {np.nanmean(f1_held):.3f} |\n"
    )
    if 6 in idx and 12 in idx:
        for target, other in ((6, 12), (12, 6)):
            frames = val & (lab[:, idx[other]] == 0)
            k = idx[target]
            fm = f1_scores(probs[frames][:, [k]], lab[frames][:, [k]], np.ones(frames.sum(), bool))[0]
            fr = f1_scores(readout[frames][:, [k]], lab[frames][:, [k]], np.ones(frames.sum(), bool))[0]
            print(
                f"{au_label(target)} on frames without {au_label(other)} ({int(frames.sum())} frames): model F1 {fm:.3f}, readout {fr:.3f}"
            )
        print()

    refined = average(rows["refined"])
    matched_error, matched_sigma = equal_smoothness_error(rows["refined"], sigma_rows)
    print("## Refinement on the same sequences (mesh units: cm)\n")
    print(
        "| method | raw error | aligned error | expression error | acceleration / ground truth | error, 10 % fastest frames | peak AU amplitude / ground truth |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, rs in rows.items():
        m = average(rs)
        print(
            f"| {name} | {m['raw']:.4f} | {m['aligned']:.4f} | {m['expression']:.4f} | {m['accel'] / m['gt_accel']:.2f} | {m['fast']:.4f} | {m['amplitude']:.2f} |"
        )
    print(
        f"| Gaussian at the model's smoothness (σ≈{matched_sigma:.2f}) | | | {matched_error:.4f} | {refined['accel'] / refined['gt_accel']:.2f} | | |"
    )
    print(
        f"\nExpression error, model / Gaussian at equal smoothness: {refined['expression'] / matched_error:.3f} (goal ≤ 0.85)"
    )
    print(f"Acceleration, model / ground truth: {refined['accel'] / refined['gt_accel']:.2f} (goal 0.7–1.5)")
    print(f"Peak AU-region amplitude, model / ground truth: {refined['amplitude']:.2f} (goal 0.9–1.1)")
    at_own_pace = {
        "coarse": average(rows["coarse"]),
        "refined": refined,
        "Gaussian σ=1": average(sigma_rows[1.0]),
        f"Gaussian σ={sigma:g} (val)": average(rows[f"Gaussian σ={sigma:g} (val)"]),
    }
    print_speed_table(task, test, masks, sigma, at_own_pace)
    print(f"\n({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
