"""``benches/decision_latency.py``: its loss, its two ratios and its table, on small inputs.

The training runs themselves are not tested (minutes each); what is tested is that the
``cumulative`` loss rewards an early correct lead, that the "same model" ratios are
``asyncsnn.latency.compare_layered`` and the "deployed" ones the paired means of two
different models, and that the table writes mean ± std over the seeds.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import asyncsnn
from asyncsnn.latency import compare_layered, decision_latency

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benches"))
import decision_latency as bench


def test_cumulative_loss_rewards_an_early_correct_lead() -> None:
    torch = pytest.importorskip("torch")
    from asyncsnn.torch.module import count_loss

    labels = torch.tensor([0])
    # The same total counts (3 for class 0, 2 for class 1), the lead early or late.
    early = torch.tensor([[[2.0, 0.0], [1.0, 0.0], [0.0, 2.0]]])
    late = torch.tensor([[[0.0, 2.0], [1.0, 0.0], [2.0, 0.0]]])
    assert float(count_loss(early, labels)) == pytest.approx(float(count_loss(late, labels)))
    assert float(bench.cumulative_loss(early, labels)) < float(bench.cumulative_loss(late, labels))
    # One timestep: the count loss.
    one = torch.tensor([[[1.0, 3.0, 0.5]]])
    assert float(bench.cumulative_loss(one, torch.tensor([2]))) == pytest.approx(
        float(count_loss(one, torch.tensor([2])))
    )


def _net(seed: int) -> asyncsnn.Network:
    rng = np.random.default_rng(seed)
    return asyncsnn.Network.sequential(
        (6,), [asyncsnn.Dense(rng.integers(-2, 6, (5, 6)) / 4), asyncsnn.Dense(rng.integers(-1, 6, (3, 5)) / 4)]
    )


def test_same_model_ratios_are_compare_layered_and_deployed_ones_pair_two_models() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2, (12, 4, 6)).astype(np.float32)
    y = rng.integers(0, 3, 12)
    net, other = _net(5), _net(6)
    asy = asyncsnn.infer(net, x, scheduler="momentum", forward_group_size=2, labels=y)
    lay = asyncsnn.infer(net, x, scheduler="layered", labels=y)
    lay_other = asyncsnn.infer(other, x, scheduler="layered", labels=y)
    row = bench._compare(asy, lay, lay_other)
    la, lo = decision_latency(asy), decision_latency(lay_other)
    same = compare_layered(asy, lay)
    compared = 0
    for q in bench.QUANTITIES:
        got = row[f"same_{q}"]
        assert got == same[q] or (math.isnan(got) and math.isnan(same[q])), q
        a, b = getattr(la, q), getattr(lo, q)
        both = (a >= 0) & (b >= 0)
        if both.any():
            assert row[f"deployed_{q}"] == pytest.approx(b[both].mean() / a[both].mean()), q
            compared += 1
    assert compared >= 3  # the network decides on some samples in both runs
    assert row["acc_async"] == asy.accuracy
    assert row["acc_layered_trained_layered"] == lay_other.accuracy


def test_table_writes_mean_and_std_over_seeds() -> None:
    keys = ("acc_layered_trained_layered", "acc_async", "synops_to_decision")
    per_seed = {}
    for seed, value in enumerate((0.5, 0.7)):
        row = {f"{p}{q}": value for p in ("same_", "deployed_", "") for q in bench.QUANTITIES}
        row.update(dict.fromkeys(keys, value))
        per_seed[seed] = row
    text = bench.table({"base": per_seed})
    line = next(line for line in text.splitlines() if line.startswith("| base"))
    # Accuracy in percent (60.0 ± 14.1), ratios with two decimals (0.60 ± 0.14).
    assert line.startswith("| base | 2 | 60.0 ± 14.1 | 60.0 ± 14.1 | 1 ± 0 | 0.60 ± 0.14 |"), line
