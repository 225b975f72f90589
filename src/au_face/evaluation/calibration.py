"""Per-AU decision offsets chosen on validation data: best F1 under a bound on false alarms.

A model's AU occurrence is ``logit >= 0``; an offset ``b`` per AU moves it to ``logit >= b``.
:func:`choose_offsets` picks ``b`` from several labelled sources at once (e.g. synthetic frames with
strong labels and photos with weak ones) under a bound on how often the AU may be on in faces known
to show none (neutral photos). ``benchmarks/calibrate.py`` folds the offsets into a checkpoint.
"""

from __future__ import annotations

import numpy as np


def f1_at(logits: np.ndarray, labels: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-AU F1 of ``logit >= offset`` over known labels, for ``offsets`` ``[G]`` (one for every AU) or
    ``[G, K]`` -> ``[G, K]`` (NaN where an AU has no positives)."""
    known, positive = labels >= 0, labels == 1
    on = logits[None] >= offsets.reshape(len(offsets), 1, -1)  # [G, N, K]
    tp = (on & positive).sum(1)
    fp = (on & known & ~positive).sum(1)
    fn = (~on & positive).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * tp / (2 * tp + fp + fn)
    return np.where(positive.any(0)[None], f1, np.nan)


def mean_f1(sources: list[tuple[np.ndarray, np.ndarray]], offsets: np.ndarray) -> np.ndarray:
    """Per-AU F1 at ``offsets [G]`` averaged over the sources where the AU has positives -> ``[G, K]``
    (0 where no source has any)."""
    scores = np.stack([f1_at(logits, labels, offsets) for logits, labels in sources])  # [S, G, K]
    counted = ~np.isnan(scores)
    return np.where(counted, scores, 0.0).sum(0) / np.maximum(counted.sum(0), 1)


def choose_offsets(
    sources: list[tuple[np.ndarray, np.ndarray]],
    neutral_logits: np.ndarray,
    max_neutral_rate: float = 0.10,
    max_neutral_aus: float = 0.4,
    slack: float = 0.01,
    max_offset: float = 3.0,
    step: float = 0.05,
    chosen: np.ndarray | None = None,
) -> np.ndarray:
    """Per-AU offsets ``b`` (occurrence: ``logit >= b``) from labelled ``sources`` and neutral faces.

    ``sources``: ``(logits [N,K], labels [N,K], −1 unknown)``, scored by their mean F1 (each source
    once, over the sources where the AU has positives); ``neutral_logits [M,K]``: faces showing no AU.

    1. Each AU's ``b`` on a grid of ``±max_offset`` keeps its on-rate over the neutral faces at most
       ``max_neutral_rate``; among those, the ``b`` nearest 0 (the trained threshold) whose mean F1 is
       within ``slack`` of the best (so noise in small validation sets does not move it far). An AU
       without positives in any source keeps the smallest allowed ``b >= 0``.
    2. While the neutral faces have more than ``max_neutral_aus`` AUs on on average, the AU whose next
       step up costs the least F1 per false alarm removed is raised.

    ``chosen [K]`` (bool; default all): only these AUs are chosen in step 1, the others start at
    ``b = 0`` (a calibrated model whose change touched only some AUs); step 2 may raise any AU.
    """
    grid = np.round(np.arange(-max_offset, max_offset + step / 2, step), 6)
    neutral_on = (neutral_logits[None] >= grid[:, None, None]).mean(1)  # [G, K], falls with b
    scored = np.stack([(labels == 1).any(0) for _, labels in sources]).any(0)  # [K]
    score = mean_f1(sources, grid)  # [G, K]
    allowed = neutral_on <= max_neutral_rate
    allowed[-1] = True  # the largest offset is always allowed
    chosen = np.ones(len(scored), dtype=bool) if chosen is None else np.asarray(chosen, dtype=bool)
    index = np.full(len(scored), int(np.argmin(np.abs(grid))))
    for k in np.flatnonzero(chosen):
        candidates = np.flatnonzero(allowed[:, k] & ((grid >= 0) | scored[k]))
        good = candidates[score[candidates, k] >= score[candidates, k].max() - slack]
        index[k] = good[np.argmin(np.abs(grid[good]))]
    columns = np.arange(len(index))
    while neutral_on[index, columns].sum() > max_neutral_aus + 1e-9:
        best_cost, best = np.inf, (-1, -1)
        for k in columns:
            lower = np.flatnonzero(neutral_on[index[k] + 1 :, k] < neutral_on[index[k], k])
            if lower.size:
                j = index[k] + 1 + lower[0]
                cost = (score[index[k], k] - score[j, k]) / (neutral_on[index[k], k] - neutral_on[j, k])
                if cost < best_cost:
                    best_cost, best = cost, (k, j)
        if best[0] < 0:
            break
        index[best[0]] = best[1]
    return grid[index]
