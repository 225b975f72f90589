"""Per-AU decision offsets: best validation F1 under a bound on false alarms in neutral faces."""

import numpy as np
import pytest

from au_face.evaluation.calibration import bagged_offsets, choose_offsets, f1_at, mean_f1, resample_groups


def test_f1_counts_known_labels_only_and_is_nan_without_positives() -> None:
    logits = np.array([[2.0, 1.0], [-1.0, 1.0], [1.0, -2.0], [0.5, 0.0]])
    labels = np.array([[1, 0], [1, 0], [0, 0], [-1, 0]])  # the last row's AU0 is unknown
    f1 = f1_at(logits, labels, np.array([0.0, 1.5]))
    assert f1[0, 0] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))  # tp 1 (row 0), fp 1 (row 2), fn 1 (row 1)
    assert f1[1, 0] == pytest.approx(2 / 3)  # offset 1.5: tp 1, fp 0, fn 1
    assert np.isnan(f1[:, 1]).all()


def test_offsets_maximise_f1_within_the_neutral_bound() -> None:
    rng = np.random.default_rng(0)
    # AU0: positives near +1, negatives near -1, so the best threshold lies near 0 - but neutral faces
    # sit near +0.5, and the bound forces the offset above most of them.
    labels = (rng.random((2000, 2)) < 0.3).astype(int)
    logits = np.where(labels == 1, 1.0, -1.0) + rng.normal(0, 0.5, labels.shape)
    neutral = np.column_stack([rng.normal(0.5, 0.2, 500), rng.normal(-3.0, 0.2, 500)])
    free = choose_offsets([(logits, labels)], neutral, max_neutral_rate=1.0, max_neutral_aus=2.0)
    bounded = choose_offsets([(logits, labels)], neutral, max_neutral_rate=0.10, max_neutral_aus=2.0)
    assert abs(free[0]) < 0.3 and abs(free[1]) < 0.3
    assert (neutral[:, 0] >= bounded[0]).mean() <= 0.10 and bounded[0] > free[0] + 0.3
    assert bounded[1] == pytest.approx(free[1])  # AU1's neutral faces are far below: the bound does not bite


def test_a_budget_of_aus_on_per_neutral_face_raises_the_cheapest_au_first() -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random((4000, 2)) < 0.3).astype(int)
    # AU0 separates its classes well (raising its threshold costs little F1); AU1 barely does.
    logits = np.where(labels == 1, [2.0, 0.3], [-2.0, -0.3]) + rng.normal(0, 0.5, labels.shape)
    neutral = rng.normal(0.0, 1.0, (1000, 2))  # both AUs on in half of the neutral faces at b = 0
    free = choose_offsets([(logits, labels)], neutral, max_neutral_rate=1.0, max_neutral_aus=2.0, slack=0.0)
    budget = choose_offsets([(logits, labels)], neutral, max_neutral_rate=1.0, max_neutral_aus=0.6, slack=0.0)
    on = (neutral >= budget).mean(0)
    assert on.sum() <= 0.6 + 1e-9 and (neutral >= free).mean(0).sum() > 0.6
    assert budget[0] - free[0] > budget[1] - free[1]  # the well separated AU pays for the budget


def test_slack_keeps_offsets_near_the_trained_threshold() -> None:
    labels = np.array([[1]] * 50 + [[0]] * 50)
    logits = np.concatenate([np.linspace(-0.5, 2.0, 50), np.linspace(-2.0, 0.5, 50)])[:, None]
    neutral = np.full((10, 1), -5.0)
    exact = choose_offsets([(logits, labels)], neutral, slack=0.0)[0]
    loose = choose_offsets([(logits, labels)], neutral, slack=0.05)[0]
    assert abs(loose) < abs(exact)


def test_the_offset_serves_every_source_and_unscored_aus_keep_the_trained_threshold() -> None:
    big_labels = np.array([[1]] * 100 + [[0]] * 900)
    big = (np.where(big_labels == 1, 1.0, 0.0), big_labels)  # perfect for offsets in (0, 1]
    small_labels = np.array([[1]] * 10 + [[0]] * 10)
    small = (np.where(small_labels == 1, 2.0, 0.5), small_labels)  # perfect for offsets in (0.5, 2]
    b = choose_offsets([big, small], np.full((10, 1), -5.0), max_neutral_rate=0.1, slack=0.0)
    assert 0.5 < b[0] <= 1.0
    assert choose_offsets([big], np.full((10, 1), -5.0), max_neutral_rate=0.1, slack=0.0)[0] == pytest.approx(0.05)
    unlabelled = (np.zeros((5, 1)), np.full((5, 1), -1))
    assert choose_offsets([unlabelled], np.full((10, 1), -1.0), max_neutral_rate=0.0)[0] == pytest.approx(0.0)
    assert choose_offsets([unlabelled], np.full((10, 1), 0.5), max_neutral_rate=0.0)[0] > 0.5


def test_a_source_counts_only_for_the_aus_it_has_positives_of() -> None:
    logits = np.array([[1.0, 1.0], [-1.0, -1.0]])
    both = (logits, np.array([[1, 1], [0, 0]]))  # perfect on both AUs at offset 0
    first_only = (logits, np.array([[1, 0], [0, 0]]))  # AU1 has no positives here
    wrong = (logits, np.array([[0, -1], [1, -1]]))  # AU0 inverted (F1 0), AU1 unknown
    f1 = mean_f1([both, wrong], np.array([0.0]))[0]
    assert f1[0] == pytest.approx(0.5) and f1[1] == pytest.approx(1.0)  # AU1: only `both` counts
    assert mean_f1([first_only], np.array([0.0]))[0].tolist() == [1.0, 0.0]  # no source with AU1 positives


def _grouped(logits: np.ndarray, labels: np.ndarray, size: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return logits, labels, np.arange(len(logits)) // size  # consecutive rows: one person's photos


def test_bagged_offsets_agree_with_one_choice_where_the_data_leave_no_doubt() -> None:
    rng = np.random.default_rng(2)
    labels = (rng.random((400, 2)) < 0.4).astype(int)
    logits = np.where(labels == 1, 2.0, -2.0) + rng.uniform(-0.2, 0.2, labels.shape)
    neutral = labels.sum(1) == 0  # the rows with no AU are the neutral faces
    one = choose_offsets([(logits, labels)], logits[neutral], slack=0.0)
    bagged = bagged_offsets([_grouped(logits, labels)], neutral, resamples=20, slack=0.0)
    np.testing.assert_allclose(bagged, one, atol=1e-9)


def test_bagged_offsets_hold_the_bounds_on_all_the_data_and_repeat_with_the_seed() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random((600, 3)) < 0.3).astype(int)
    logits = np.where(labels == 1, 0.8, -0.8) + rng.normal(0, 0.8, labels.shape)
    neutral = rng.random(600) < 0.3
    labels[neutral] = 0
    logits[neutral] += 0.6  # neutral faces that look a little like every AU
    args = ([_grouped(logits, labels)], neutral)
    first = bagged_offsets(*args, resamples=25, seed=5, max_neutral_rate=0.10, max_neutral_aus=0.2)
    on = (logits[neutral] >= first).mean(0)
    assert (on <= 0.10 + 1e-9).all() and on.sum() <= 0.2 + 1e-9
    np.testing.assert_array_equal(
        bagged_offsets(*args, resamples=25, seed=5, max_neutral_rate=0.10, max_neutral_aus=0.2), first
    )


def test_bagged_offsets_leave_unchosen_aus_at_zero_without_a_budget() -> None:
    rng = np.random.default_rng(5)
    labels = (rng.random((300, 2)) < 0.3).astype(int)
    logits = np.where(labels == 1, 1.0, -1.0) + rng.normal(0, 0.7, labels.shape)
    neutral = labels.sum(1) == 0
    logits[neutral, 1] += 2.0  # AU1 would need raising for the rate bound, but it is not chosen
    b = bagged_offsets([_grouped(logits, labels)], neutral, resamples=10, max_neutral_aus=2.0, chosen=[True, False])
    assert b[1] == 0.0 and b[0] != 0.0


def test_a_resample_draws_whole_groups_with_replacement() -> None:
    groups = np.array(["ann", "bob", "ann", "cy", "bob", "ann", "dee"])
    rng = np.random.default_rng(6)
    draws = [groups[resample_groups(groups, rng)] for _ in range(30)]
    for drawn in draws:
        names, counts = np.unique(drawn, return_counts=True)
        size = dict(zip(*np.unique(groups, return_counts=True)))
        assert all(count % size[name] == 0 for name, count in zip(names, counts))  # whole groups only
        assert sum(count // size[name] for name, count in zip(names, counts)) == 4  # as many groups as there are
    assert any(len(set(drawn)) < 4 for drawn in draws)  # with replacement: some draws miss a group
