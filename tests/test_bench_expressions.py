"""``benchmarks/bench_expressions.py``: its AUC table against the weak labels, AU24 read against the lips' state."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_expressions as bench

AUS = [12, 24, 25]


def test_lip_press_rates_split_photos_by_the_lips_in_their_mesh() -> None:
    expressions = np.array(["anger", "anger", "anger", "neutral", "neutral", "surprise"])
    parting = np.array([0.40, 0.03, 0.05, 0.02, 0.15, 0.30])  # parted, together, together, together, between, parted
    au24 = np.array([0.9, 0.8, 0.1, 0.6, 0.9, 0.2])
    scores = {"model": np.stack([np.zeros(6), au24, np.zeros(6)], axis=1)}
    table = bench.lip_press_table(scores, AUS, expressions, parting).splitlines()
    assert table[0] == "| system | lips parted (2) | lips together, angry (2) | lips together, neutral (1) |"
    # parted: 1 of 2 on; angry with lips together: 1 of 2; the one neutral face with lips together: on
    assert table[2] == "| model | 50% | 50% | 100% |"


def test_on_rates_count_smiles_read_on_faces_whose_expression_rules_them_out() -> None:
    aus = [4, 12]
    expressions = np.array(["happiness", "neutral", "sadness", "anger", "anger", "disgust", "surprise"])
    au12 = np.array([0.9, 0.1, 0.8, 0.2, 0.6, 0.1, 0.9])  # the surprised face is not among them
    probs = np.stack([np.zeros(7), au12], axis=1)
    rates = bench.on_rates(probs, expressions, aus)
    assert rates["AU12_on_not_smiling"] == 0.5  # sadness and one of the angry faces, of 4
    assert (rates["AU12_on_happy"], rates["AU12_on_neutral"]) == (1.0, 0.0)


def test_on_rate_matrix_gives_each_expressions_rate_for_every_au() -> None:
    expressions = np.array(["surprise", "surprise", "neutral"])
    probs = np.array([[0.9, 0.6, 0.7], [0.1, 0.2, 0.8], [0.0, 0.0, 0.0]])
    table = bench.on_rate_matrix(probs, AUS, expressions).splitlines()
    assert table[0] == "| expression (photos) | AU12 | AU24 | AU25 |"
    assert table[2:] == ["| neutral (1) | 0% | 0% | 0% |", "| surprise (2) | 50% | 50% | 100% |"]


def test_every_auc_row_scores_the_weak_labels_ones_against_their_zeros() -> None:
    """The table's positive expressions are those whose weak label is 1 for the AU, its negatives 0."""
    from au_face.aus import AU_SETS, weak_au_labels

    aus = list(AU_SETS["default"])
    assert {5, 7} <= set(bench.AUC_TABLE), "the eyelid AUs the appearance head reads"
    for au, (positives, negatives) in bench.AUC_TABLE.items():
        k = aus.index(au)
        assert [int(weak_au_labels(e, aus)[k]) for e in positives] == [1] * len(positives), au
        assert [int(weak_au_labels(e, aus)[k]) for e in negatives] == [0] * len(negatives), au
