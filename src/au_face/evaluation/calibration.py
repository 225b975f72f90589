"""Per-AU decision offsets chosen on validation data: best F1 under a bound on false alarms.

A model's AU occurrence is ``logit >= 0``; an offset ``b`` per AU moves it to ``logit >= b``.
:func:`choose_offsets` picks ``b`` from several labelled sources at once (e.g. synthetic frames with
strong labels and photos with weak ones) under a bound on how often the AU may be on in faces known
to show none (neutral photos). Its choice jumps with small changes of the data (a few photos more or
less move an offset by half a logit), so :func:`bagged_offsets` takes each AU's median choice over
bootstrap resamples of persons and sequences, then holds the bounds on all the data.
``benchmarks/calibrate.py`` folds the offsets into a checkpoint.
"""

from __future__ import annotations

from functools import partial

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
    grid = _grid(max_offset, step)
    neutral_on, allowed = _neutral_rates(neutral_logits, grid, max_neutral_rate)
    scored = np.stack([(labels == 1).any(0) for _, labels in sources]).any(0)  # [K]
    score = mean_f1(sources, grid)  # [G, K]
    index = np.full(len(scored), int(np.argmin(np.abs(grid))))
    for k in np.flatnonzero(_chosen_mask(chosen, len(scored))):
        candidates = np.flatnonzero(allowed[:, k] & ((grid >= 0) | scored[k]))
        good = candidates[score[candidates, k] >= score[candidates, k].max() - slack]
        index[k] = good[np.argmin(np.abs(grid[good]))]
    return grid[_within_budget(index, neutral_on, score, max_neutral_aus)]


def _grid(max_offset: float, step: float) -> np.ndarray:
    return np.round(np.arange(-max_offset, max_offset + step / 2, step), 6)


def _neutral_rates(
    neutral_logits: np.ndarray, grid: np.ndarray, max_neutral_rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each AU's on-rate over the neutral faces at each grid offset ``[G, K]`` (it falls with ``b``),
    and where it is within ``max_neutral_rate`` (the largest offset is always allowed)."""
    neutral_on = (neutral_logits[None] >= grid[:, None, None]).mean(1)
    allowed = neutral_on <= max_neutral_rate
    allowed[-1] = True
    return neutral_on, allowed


def _chosen_mask(chosen: np.ndarray | None, count: int) -> np.ndarray:
    """``chosen`` as a ``[K]`` bool mask (None: every AU)."""
    return np.ones(count, dtype=bool) if chosen is None else np.asarray(chosen, dtype=bool)


def _within_budget(index: np.ndarray, neutral_on: np.ndarray, score: np.ndarray, max_neutral_aus: float) -> np.ndarray:
    """Grid indices ``[K]`` raised, cheapest F1 per false alarm removed first, until the neutral faces
    have at most ``max_neutral_aus`` AUs on on average (``neutral_on``, ``score``: ``[G, K]``)."""
    index, columns = index.copy(), np.arange(len(index))
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
    return index


def bagged_offsets(
    sources: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    neutral: np.ndarray,
    resamples: int = 100,
    seed: int = 0,
    max_neutral_rate: float = 0.10,
    max_neutral_aus: float = 0.4,
    slack: float = 0.01,
    max_offset: float = 3.0,
    step: float = 0.05,
    chosen: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`choose_offsets` bagged: each AU's median offset over ``resamples`` bootstrap resamples.

    ``sources``: ``(logits [N,K], labels [N,K], groups [N])``; ``neutral [N]`` (bool): which rows of the
    first source are neutral faces (photos of one collection). A resample draws whole groups (a
    person's photos, a sequence's frames) with replacement from each source, its neutral faces with
    it, and runs :func:`choose_offsets` on them. The median, rounded
    down to the grid, then answers to all the data: a ``chosen`` AU on in more than ``max_neutral_rate``
    of the neutral faces is raised to the smallest offset within it, and the AU budget is met as
    :func:`choose_offsets` meets it. The same ``seed`` gives the same offsets.
    """
    rng = np.random.default_rng(seed)
    rule = partial(
        choose_offsets,
        max_neutral_rate=max_neutral_rate,
        max_neutral_aus=max_neutral_aus,
        slack=slack,
        max_offset=max_offset,
        step=step,
        chosen=chosen,
    )
    choices = []
    for _ in range(resamples):
        rows = [resample_groups(groups, rng) for _, _, groups in sources]
        drawn = [(logits[r], labels[r]) for (logits, labels, _), r in zip(sources, rows)]
        choices.append(rule(drawn, sources[0][0][rows[0][neutral[rows[0]]]]))
    grid = _grid(max_offset, step)
    index = np.searchsorted(grid, np.median(choices, axis=0) + 1e-9, side="right") - 1
    neutral_on, allowed = _neutral_rates(sources[0][0][neutral], grid, max_neutral_rate)
    lowest = allowed.argmax(axis=0)  # the neutral rate falls with b: the first allowed offset
    index = np.where(_chosen_mask(chosen, len(index)), np.maximum(index, lowest), index)
    score = mean_f1([(logits, labels) for logits, labels, _ in sources], grid)
    return grid[_within_budget(index, neutral_on, score, max_neutral_aus)]


def resample_groups(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices of a bootstrap resample of whole ``groups [N]``: as many groups as there are, drawn
    with replacement, each with all its rows."""
    names, inverse = np.unique(groups, return_inverse=True)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    return np.concatenate([members[i] for i in rng.integers(0, len(names), len(names))])
