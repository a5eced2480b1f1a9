"""analysis numerics: Pareto masks and hypervolume against brute force, AUC over memory and knees by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from incsweep.analysis import auc_over_memory, best_under, hypervolume, knee_index, memory_aucs, pareto_mask
from incsweep.analysis.objectives import Objective, parse_objectives
from incsweep.analysis.pareto import nondominated_mask
from incsweep.core.errors import ConfigError


def brute_mask(f: np.ndarray) -> np.ndarray:
    """O(n^2) definition: dominated iff some row is <= everywhere and < somewhere."""
    return np.array([not any(np.all(g <= p) and np.any(g < p) for g in f) for p in f], dtype=bool)


def brute_hypervolume(p: np.ndarray, ref: np.ndarray) -> float:
    """Volume of the union of boxes [p, ref], counted cell by cell on the grid of all coordinates."""
    p = p[np.all(p < ref, axis=1)]
    if not len(p):
        return 0.0
    axes = [np.unique(np.r_[p[:, k], ref[k]]) for k in range(p.shape[1])]
    total = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        lo = np.array([a[c] for a, c in zip(axes, cell)])
        hi = np.array([a[c + 1] for a, c in zip(axes, cell)])
        if np.any(np.all(p <= lo, axis=1)):
            total += float(np.prod(hi - lo))
    return total


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_front_matches_brute_force_with_ties_and_duplicates(d):
    rng = np.random.default_rng(d)
    for _ in range(60):
        n = int(rng.integers(1, 40))
        # few distinct values: many ties in single objectives and many exact duplicate points
        f = rng.integers(0, 4, size=(n, d)).astype(float)
        if n > 2:
            f[1] = f[0]
        np.testing.assert_array_equal(nondominated_mask(f), brute_mask(f))
    f = rng.random((300, d))  # continuous values too
    np.testing.assert_array_equal(nondominated_mask(f), brute_mask(f))


def test_front_small_cases_by_hand():
    f = np.array([[1, 5], [1, 5], [2, 2], [2, 3], [3, 2], [5, 1], [0, 9]], dtype=float)
    # duplicates (rows 0 and 1) are both kept; (2,3) and (3,2) are dominated by (2,2)
    assert nondominated_mask(f).tolist() == [True, True, True, False, False, True, True]
    # senses: accuracy max, memory min
    vals = np.array([[0.5, 1.0], [0.6, 1.0], [0.7, 3.0], [0.6, 2.0]])
    assert pareto_mask(vals, ["max", "min"]).tolist() == [False, True, True, False]
    assert nondominated_mask(np.zeros((0, 3))).tolist() == []
    with pytest.raises(ValueError, match="NaN"):
        nondominated_mask(np.array([[np.nan, 1.0]]))


@pytest.mark.parametrize("d", [2, 3, 4])
def test_hypervolume_matches_brute_force(d):
    rng = np.random.default_rng(10 + d)
    for _ in range(25 if d < 4 else 10):
        n = int(rng.integers(1, 14 if d < 4 else 8))
        p = rng.integers(0, 6, size=(n, d)).astype(float)  # ties, duplicates, points on the reference
        ref = np.full(d, 5.0)
        assert hypervolume(p, ref) == pytest.approx(brute_hypervolume(p, ref), abs=1e-12)
    p = rng.random((12, d))
    assert hypervolume(p, np.ones(d)) == pytest.approx(brute_hypervolume(p, np.ones(d)), rel=1e-12)


def test_hypervolume_by_hand_and_senses():
    # two boxes [1,3]x[2,3] (area 2) and [2,3]x[1,3] (area 2) overlapping on [2,3]x[2,3] (area 1)
    assert hypervolume(np.array([[1.0, 2.0], [2.0, 1.0]]), [3.0, 3.0]) == pytest.approx(3.0)
    # accuracy max / memory min: (0.8 acc, 2 MB) against ref (0.5 acc, 4 MB) -> 0.3 * 2
    assert hypervolume(np.array([[0.8, 2.0]]), [0.5, 4.0], ["max", "min"]) == pytest.approx(0.6)
    # a point no better than the reference in one objective adds nothing
    assert hypervolume(np.array([[0.4, 1.0], [0.8, 4.0]]), [0.5, 4.0], ["max", "min"]) == 0.0
    # 3-D unit cube corner plus a dominated point
    assert hypervolume(np.array([[0, 0, 0], [0.5, 0.5, 0.5]]), [1, 1, 1]) == pytest.approx(1.0)


def test_auc_over_memory_by_hand():
    mb = np.array([2.0, 4.0, 8.0])
    acc = np.array([0.5, 0.7, 0.8])
    # trapezoids: 2 * (0.5 + 0.7) / 2 + 4 * (0.7 + 0.8) / 2 = 1.2 + 3.0
    assert auc_over_memory(mb, acc) == pytest.approx(4.2)
    # [3, 6]: acc(3) = 0.6, acc(6) = 0.75 -> 1 * 0.65 + 2 * 0.725
    assert auc_over_memory(mb[::-1], acc[::-1], 3.0, 6.0) == pytest.approx(2.1)
    with pytest.raises(ValueError, match="outside the curve"):
        auc_over_memory(mb, acc, 1.0, 6.0)
    # MEMO's scale: accuracy ~0.68 over 7.6..23.5 MB gives ~10.8 (its reported AUC-A is 10.85)
    assert auc_over_memory(np.array([7.6, 23.5]), np.array([0.68, 0.68])) == pytest.approx(10.812)


def test_memory_aucs_use_fronts_and_a_shared_range():
    # method a: the (5 MB, 0.55) run is dominated by (4 MB, 0.7) and is not on the curve
    a = (np.array([2.0, 4.0, 5.0, 8.0]), np.array([0.5, 0.7, 0.55, 0.8]), np.array([0.4, 0.6, 0.3, 0.7]))
    b = (np.array([3.0, 6.0]), np.array([0.6, 0.9]), np.array([0.5, 0.8]))
    out = memory_aucs({"a": a, "b": b})
    # shared range [3, 6]; a's avg curve (2,.5),(4,.7),(8,.8): 1*(.6+.7)/2 + 2*(.7+.75)/2 = 0.65 + 1.45
    assert (out["a"].lo_mb, out["a"].hi_mb) == (3.0, 6.0)
    assert out["a"].auc_a == pytest.approx(2.1)
    # a's last curve (2,.4),(4,.6),(8,.7): 1*(.5+.6)/2 + 2*(.6+.65)/2 = 0.55 + 1.25
    assert out["a"].auc_l == pytest.approx(1.8)
    assert out["b"].auc_a == pytest.approx(3 * 0.75) and out["b"].auc_l == pytest.approx(3 * 0.65)
    assert out["a"].points == 3
    # disjoint spans: each group over its own. c's last accuracy does not grow with memory, so its
    # last curve is the one point at 20 MB held flat to its largest run (30 MB): 10 * 0.9
    far = memory_aucs({"a": a, "c": (np.array([20.0, 30.0]), np.array([0.9, 0.95]), np.array([0.9, 0.9]))})
    assert far["c"].auc_a == pytest.approx(10 * 0.925) and far["c"].auc_l == pytest.approx(9.0)
    assert (far["a"].lo_mb, far["a"].hi_mb) == (2.0, 8.0) and far["a"].auc_a == pytest.approx(4.2)
    # a's last curve (2,.4),(4,.6),(8,.7): 2 * 0.5 + 4 * 0.65
    assert far["a"].auc_l == pytest.approx(3.6)


def test_knee_and_best_under_by_hand():
    objs = parse_objectives("avg_acc:max,total_mb:min")
    # front from cheap/poor to costly/good; (2 MB, 0.8) is where the gains flatten
    front = np.array([[0.2, 1.0], [0.8, 2.0], [0.85, 6.0], [0.9, 10.0]])
    assert knee_index(front, objs) == 1
    assert knee_index(front[[0, 3]], objs) in (0, 1)  # two points: nearest the ideal; both tie here
    assert knee_index(np.array([[0.8, 2.0], [0.9, 10.0]]), objs) == 0
    assert knee_index(np.zeros((0, 2)), objs) is None
    three = [Objective("a", "max"), Objective("b", "min"), Objective("c", "min")]
    assert knee_index(np.array([[1.0, 1.0, 1.0], [0.9, 0.1, 0.1], [0.0, 0.0, 0.0]]), three) == 1
    mem, acc = np.array([1.0, 2.0, 2.0, 5.0]), np.array([0.3, 0.6, 0.6, 0.9])
    assert best_under(mem, acc, 4.0) == 1  # tie between rows 1 and 2: the first
    assert best_under(mem, acc, 5.0) == 3 and best_under(mem, acc, 0.5) is None


def test_objectives_parse_and_split():
    objs = parse_objectives("avg_acc:max,total_mb:min,forgetting:min", split="test")
    assert [str(o) for o in objs] == ["test_avg_acc:max", "total_mb:min", "test_forgetting:min"]
    with pytest.raises(ConfigError, match="direction 'up'"):
        parse_objectives("avg_acc:up")
    with pytest.raises(ConfigError, match="appears twice"):
        parse_objectives("avg_acc:max,avg_acc:min")
    with pytest.raises(ConfigError, match="split='train'"):
        parse_objectives("avg_acc:max", split="train")
