"""asyncsnn.cost: hand-computed energies and times, profile validation, docs/cost.md."""

from __future__ import annotations

import dataclasses
import doctest
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import asyncsnn
import asyncsnn.cost
import asyncsnn.result
from asyncsnn.cost import PROFILES, CostReport, HardwareProfile, estimate, resolve_profiles
from asyncsnn.latency import decision_latency
from asyncsnn.testing import random_count_input, random_grid_network

ROOT = Path(__file__).resolve().parents[2]
LOIHI = PROFILES["loihi"]


def _two_layer() -> tuple[asyncsnn.Network, np.ndarray]:
    """1 input -> 2 hidden -> 1 output; one input event at t = 0 of T = 2."""
    net = asyncsnn.Network.sequential(
        (1,),
        [asyncsnn.Dense(np.array([[2.0], [2.0]])), asyncsnn.Dense(np.array([[2.0, 2.0]]))],
        threshold=1.0,
        beta=0.5,
    )
    return net, np.array([[[1.0], [0.0]]], dtype=np.float32)


def test_hand_computed_energy_and_time_on_a_two_layer_network(engine: Any) -> None:
    """fifo, F = 1, stop at the first output spike: one hidden spike is delivered, one dropped."""
    net, x = _two_layer()
    res = engine(net, x, scheduler="fifo", forward_group_size=1, stop="first_output", labels=np.array([0]))
    # The counters this test prices (docs/semantics.md §7), worked out by hand:
    # t0: step 0 delivers the input (2 synops), both hidden neurons fire; fifo delivers h0 (1 synop);
    # step 1: the output fires, the stop drops h1. t1: one forward step, nothing happens.
    assert res.synops.tolist() == [3]
    assert res.input_events.tolist() == [1]
    assert res.spikes.tolist() == [[2, 1]]
    assert res.dropped_spikes.tolist() == [1]
    assert res.forward_steps.tolist() == [3]
    assert res.first_output_step.tolist() == [[1, -1]]
    assert res.first_output_synops.tolist() == [[3, -1]]
    assert res.first_correct_step.tolist() == [[1, -1]]

    rep = estimate(res, net, LOIHI)
    assert rep.execution == "asynchronous"
    assert rep.cores_used == 2  # two populations, each on its own core
    assert rep.neuron_updates.tolist() == [6.0]  # 3 neurons x 2 timesteps
    assert rep.routed_spikes.tolist() == [2.0]  # 1 input event + 2 hidden spikes - 1 dropped
    assert rep.membrane_accesses.tolist() == [3.0]
    assert rep.barriers.tolist() == [0.0]
    # 3 x 23.6 + 6 x 81 + 2 x 1.7 pJ
    assert rep.energy_per_inference[0] == pytest.approx(560.2e-12, rel=1e-12)
    assert rep.energy_terms["synops"][0] == pytest.approx(70.8e-12, rel=1e-12)
    assert rep.energy_terms["membrane_accesses"][0] == 0.0
    # (3 x 3.5 + 6 x 8.4 ns) / 2 cores
    assert rep.time_per_inference[0] == pytest.approx(30.45e-9, rel=1e-12)
    # t0 until its output spike: (3 synops x 3.5 + 3 leaks x 8.4 ns) / 2 cores; t1 has none
    assert rep.time_to_first_output[0, 0] == pytest.approx(17.85e-9, rel=1e-12)
    assert math.isnan(rep.time_to_first_output[0, 1])
    assert rep.mean_time_to_first_output == pytest.approx(17.85e-9, rel=1e-12)
    # The decision falls in t0 too: the same stretch, counted from the start of the sample.
    assert rep.time_to_correct[0] == pytest.approx(17.85e-9, rel=1e-12)
    assert rep.mean_time_to_decision == pytest.approx(17.85e-9, rel=1e-12)
    # 3 synops x 23.6 pJ + 3 leaks x 81 pJ (the routed spikes are left out)
    assert rep.energy_to_decision[0] == pytest.approx(313.8e-12, rel=1e-12)

    lay = estimate(res, net, "loihi", scheduler="layered")
    assert lay.barriers.tolist() == [3.0]
    assert lay.time_per_inference[0] == pytest.approx(30.45e-9 + 3 * 113e-9, rel=1e-12)
    assert lay.time_to_first_output[0, 0] == pytest.approx(17.85e-9 + 2 * 113e-9, rel=1e-12)
    assert lay.time_to_decision[0] == pytest.approx(17.85e-9 + 2 * 113e-9, rel=1e-12)
    np.testing.assert_array_equal(lay.energy_per_inference, rep.energy_per_inference)
    np.testing.assert_array_equal(lay.energy_to_decision, rep.energy_to_decision)


def _late_decision() -> tuple[asyncsnn.Network, np.ndarray]:
    """1 input -> 2 hidden -> 2 outputs, beta = 1; sample 0 has an input event in each of T = 3 frames, sample 1 none.

    The outputs integrate 0.6 per timestep (class 0: 0.3 from each hidden neuron; class 1:
    0.6 from h0) and first cross the threshold 1 in t1.
    """
    net = asyncsnn.Network.sequential(
        (1,),
        [asyncsnn.Dense(np.array([[2.0], [2.0]])), asyncsnn.Dense(np.array([[0.3, 0.3], [0.6, 0.0]]))],
        threshold=1.0,
        beta=1.0,
    )
    x = np.zeros((2, 3, 1), dtype=np.float32)
    x[0, :, 0] = 1.0
    return net, x


def test_time_and_energy_to_correct_and_decision_count_from_the_start_of_the_sample() -> None:
    """Worked by hand for fifo and layered; equal to the guide's decision latency priced on Loihi."""
    net, x = _late_decision()
    labels = np.array([1, 1])
    fifo = asyncsnn.infer(net, x, scheduler="fifo", forward_group_size=1, labels=labels)
    lay = asyncsnn.infer(net, x, scheduler="layered", labels=labels)
    # fifo, t = 0 and 2: input (2 synops), both hidden fire, h0 then h1 delivered (2 + 2): 3 steps, 6 synops.
    # t1 as well, but the outputs are at 0.6: h0's delivery brings class 1 to 1.2 (it fires in step 1, label 1:
    # correct after 3 + 2 steps, 6 + 4 synops), h1's brings class 0 to 1.2 (step 2: counts [1, 1], the running
    # prediction changes to 0, the stable decision after 3 + 3 steps and 6 + 6 synops, in timestep 1).
    assert fifo.timestep_forward_steps[0].tolist() == [3, 3, 3]
    lat = decision_latency(fifo)
    assert (lat.steps_to_correct.tolist(), lat.synops_to_correct.tolist()) == ([5, -1], [10, -1])
    assert (lat.steps_to_decision.tolist(), lat.synops_to_decision.tolist()) == ([6, -1], [12, -1])
    assert fifo.decision_timestep.tolist() == [1, -1]
    # layered: 2 steps per timestep; both outputs fire in step 1 of t1: correct = decision = 4 steps, 12 synops.
    lat_lay = decision_latency(lay)
    assert (lat_lay.steps_to_correct.tolist(), lat_lay.synops_to_correct.tolist()) == ([4, -1], [12, -1])
    assert (lat_lay.steps_to_decision.tolist(), lat_lay.synops_to_decision.tolist()) == ([4, -1], [12, -1])

    # Loihi, 2 cores (two populations); t0 and t1 leak 4 neurons each: 8 updates x 8.4 ns = 67.2 ns.
    asy = estimate(fifo, net, LOIHI)
    assert asy.cores_used == 2
    assert asy.time_to_correct[0] == pytest.approx((10 * 3.5e-9 + 67.2e-9) / 2, rel=1e-12)  # 51.1 ns
    assert asy.time_to_decision[0] == pytest.approx((12 * 3.5e-9 + 67.2e-9) / 2, rel=1e-12)  # 54.6 ns
    assert asy.energy_to_correct[0] == pytest.approx(10 * 23.6e-12 + 8 * 81e-12, rel=1e-12)  # 884 pJ
    assert asy.energy_to_decision[0] == pytest.approx(12 * 23.6e-12 + 8 * 81e-12, rel=1e-12)  # 931.2 pJ
    # Sample 1 has no output spike: NaN per sample, left out of the means.
    for values in (asy.time_to_correct, asy.time_to_decision, asy.energy_to_correct, asy.energy_to_decision):
        assert math.isnan(values[1])
    assert asy.mean_time_to_decision == pytest.approx(54.6e-9, rel=1e-12)
    assert asy.mean_energy_to_correct == pytest.approx(884e-12, rel=1e-12)
    # Layered execution of the layered run: a 113 ns barrier after each of the 4 forward steps.
    layered = estimate(lay, net, LOIHI)
    assert layered.execution == "layered"
    assert layered.time_to_correct[0] == pytest.approx(54.6e-9 + 4 * 113e-9, rel=1e-12)  # 506.6 ns
    assert layered.time_to_decision[0] == pytest.approx(54.6e-9 + 4 * 113e-9, rel=1e-12)
    assert layered.energy_to_decision[0] == pytest.approx(931.2e-12, rel=1e-12)
    # The fifo run on a layered chip: a barrier for each step before the decision, earlier timesteps included.
    barriers = estimate(fifo, net, LOIHI, scheduler="layered")
    assert barriers.time_to_correct[0] == pytest.approx(51.1e-9 + 5 * 113e-9, rel=1e-12)
    assert barriers.time_to_decision[0] == pytest.approx(54.6e-9 + 6 * 113e-9, rel=1e-12)
    # Not the time to 1st output within a timestep: that one restarts at t1 (2 synops + 1 hidden delivery).
    assert np.isnan(asy.time_to_first_output[0, [0, 2]]).all()
    assert asy.time_to_first_output[0, 1] == pytest.approx((4 * 3.5e-9 + 4 * 8.4e-9) / 2, rel=1e-12)
    document = asy.as_dict()
    assert document["mean_time_to_correct_s"] == asy.mean_time_to_correct
    assert document["mean_energy_to_decision_j"] == asy.mean_energy_to_decision
    assert document["mean_time_to_first_output_s"] == asy.mean_time_to_first_output


def test_a_run_without_output_spikes_or_labels_has_no_decision_time() -> None:
    net, x = _late_decision()
    silent = asyncsnn.infer(net, x[1:], scheduler="momentum", labels=np.array([0]))  # no input, no output spike
    unlabelled = asyncsnn.infer(net, x[:1], scheduler="momentum")  # a decision, but nothing to be correct about
    for profile in (LOIHI, PROFILES["seneca"]):
        rep = estimate(silent, net, profile)
        assert np.isnan(rep.time_to_decision).all()
        assert np.isnan(rep.energy_to_decision).all()
        doc = rep.as_dict()
        for key in ("mean_time_to_correct_s", "mean_time_to_decision_s", "mean_energy_to_correct_j"):
            assert doc[key] is None, key
        assert doc["mean_energy_to_decision_j"] is None
        json.dumps(doc)
        assert "n/a to the stable decision" in rep.summary()
        rep = estimate(unlabelled, net, profile)
        assert np.isnan(rep.energy_to_correct).all()
        assert rep.as_dict()["mean_energy_to_correct_j"] is None
        assert rep.energy_to_decision[0] > 0
    # SENeCa prices the stretch to the decision by its synops only, and has no time for it.
    seneca = estimate(unlabelled, net, "seneca")
    assert seneca.energy_to_decision[0] == pytest.approx(decision_latency(unlabelled).synops_to_decision[0] * 2.8e-12)
    assert np.isnan(seneca.time_to_decision).all()


def test_seneca_prices_synops_only_and_has_no_time() -> None:
    net, x = _two_layer()
    res = asyncsnn.infer(net, x, scheduler="fifo", forward_group_size=1, stop="first_output")
    rep = estimate(res, net, "seneca")
    assert rep.energy_per_inference[0] == pytest.approx(3 * 2.8e-12, rel=1e-12)
    assert np.isnan(rep.time_per_inference).all()
    assert np.isnan(rep.time_to_first_output).all()
    assert math.isnan(rep.mean_time_to_decision)
    assert set(rep.omitted) == {
        "energy_per_neuron_update",
        "energy_per_spike",
        "energy_per_membrane_access",
        "time_per_synop",
        "time_per_neuron_update",
        "barrier_time",
    }
    summary = rep.as_dict()
    assert summary["mean_time_per_inference_s"] is None
    json.dumps(summary)  # JSON-safe
    assert "n/a" in rep.summary()


@pytest.mark.parametrize("kind", ["dense", "skip", "conv"])
def test_layered_costs_at_least_asynchronous_time_and_the_same_energy(kind: str) -> None:
    """For one run's counters: barriers only add time; a timestep's decision is within its sample's time."""
    chip = HardwareProfile("chip", energy_per_synop=1e-12, cores=3, neurons_per_core=4, time_per_synop=1e-9)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        net = random_grid_network(rng, kind)  # type: ignore[arg-type]
        x = random_count_input(rng, net, batch=4, timesteps=3)
        for scheduler in ("layered", "momentum"):
            res = asyncsnn.infer(net, x, scheduler=scheduler, forward_group_size=2, labels=np.zeros(4, np.int64))
            for profile in (LOIHI, chip):
                asy = estimate(res, net, profile, scheduler="random")
                lay = estimate(res, net, profile, scheduler="layered")
                np.testing.assert_array_equal(lay.energy_per_inference, asy.energy_per_inference)
                assert (lay.time_per_inference >= asy.time_per_inference).all()
                has = res.first_output_step >= 0
                assert (lay.time_to_first_output[has] >= asy.time_to_first_output[has]).all()
                assert np.isnan(lay.time_to_first_output[~has]).all()
                lat = decision_latency(res)
                for rep in (asy, lay):
                    per_sample = rep.time_per_inference[:, None] * np.ones_like(rep.time_to_first_output)
                    assert (rep.time_to_first_output[has] <= per_sample[has] * (1 + 1e-12)).all()
                    assert (rep.energy_per_inference >= rep.energy_terms["synops"]).all()
                    _check_decision_stretches(rep, res, lat, net.n_neurons)
                for name in ("time_to_correct", "time_to_decision"):
                    a, b = getattr(asy, name), getattr(lay, name)
                    assert (np.isnan(a) == np.isnan(b)).all()
                    assert (b[~np.isnan(b)] >= a[~np.isnan(a)]).all()


def _check_decision_stretches(rep: CostReport, res: asyncsnn.InferenceResult, lat: Any, n_neurons: int) -> None:
    """The docs/cost.md formulas from the latency counters, NaN exactly where they are -1, within the sample's totals."""
    p = rep.profile
    t_bar = (p.barrier_time or 0.0) if rep.execution == "layered" else 0.0
    first_correct = np.array(
        [np.flatnonzero(row >= 0)[0] if (row >= 0).any() else -1 for row in res.first_correct_step]
    )
    for what, timestep in (("correct", first_correct), ("decision", res.decision_timestep)):
        steps, synops = getattr(lat, f"steps_to_{what}"), getattr(lat, f"synops_to_{what}")
        time, energy = getattr(rep, f"time_to_{what}"), getattr(rep, f"energy_to_{what}")
        has = steps >= 0
        assert (np.isnan(time) == ~has).all()
        assert (np.isnan(energy) == ~has).all()
        updates = n_neurons * (timestep[has] + 1)
        want_e = synops[has] * ((p.energy_per_synop or 0) + (p.energy_per_membrane_access or 0))
        want_e = want_e + updates * (p.energy_per_neuron_update or 0)
        np.testing.assert_allclose(energy[has], want_e, rtol=1e-12)
        assert (energy[has] <= rep.energy_per_inference[has] * (1 + 1e-12)).all()
        if p.synop_time is not None:
            work = synops[has] * p.synop_time + updates * (p.time_per_neuron_update or 0)
            np.testing.assert_allclose(time[has], work / rep.cores_used + steps[has] * t_bar, rtol=1e-12)
            assert (time[has] <= rep.time_per_inference[has] * (1 + 1e-12)).all()


def test_the_default_execution_follows_the_run() -> None:
    net, x = _two_layer()
    assert estimate(asyncsnn.infer(net, x, scheduler="layered"), net, LOIHI).execution == "layered"
    assert estimate(asyncsnn.infer(net, x, scheduler="momentum"), net, LOIHI).execution == "asynchronous"
    res = asyncsnn.infer(net, x, scheduler=asyncsnn.Scheduler.LAYERED)
    assert estimate(res, net, LOIHI, scheduler=asyncsnn.Scheduler.RANDOM).execution == "asynchronous"


def test_custom_profile_clock_cores_and_from_dict() -> None:
    net, x = _two_layer()
    res = asyncsnn.infer(net, x, scheduler="fifo", forward_group_size=1, stop="first_output")
    chip = HardwareProfile.from_dict(
        {
            "name": "mychip",
            "energy_per_synop": 5e-12,
            "energy_per_membrane_access": 1e-12,
            "cores": 1,
            "clock_hz": 100e6,
            "synops_per_cycle": 2,
            "time_per_neuron_update": 10e-9,
            "barrier_time": 50e-9,
        }
    )
    assert chip.synop_time == pytest.approx(5e-9)
    assert chip.omitted == ("energy_per_neuron_update", "energy_per_spike")
    rep = estimate(res, net, chip, scheduler="layered")
    assert rep.energy_per_inference[0] == pytest.approx(3 * 5e-12 + 3 * 1e-12, rel=1e-12)
    assert rep.time_per_inference[0] == pytest.approx(3 * 5e-9 + 6 * 10e-9 + 3 * 50e-9, rel=1e-12)
    assert HardwareProfile.from_dict(chip.as_dict()) == chip
    # Capacity: 2 + 1 neurons at 1 neuron per core need 3 cores, of the 8 there are.
    assert dataclasses.replace(chip, cores=8, neurons_per_core=1).cores_used(net) == 3
    assert dataclasses.replace(chip, cores=2, neurons_per_core=1).cores_used(net) == 2
    assert dataclasses.replace(chip, cores=8).cores_used(net) == 8


@pytest.mark.parametrize(
    ("fields", "field", "value"),
    [
        ({"energy_per_synop": -1.0}, "energy_per_synop", -1.0),
        ({"energy_per_neuron_update": float("nan")}, "energy_per_neuron_update", "nan"),
        ({"energy_per_spike": float("inf")}, "energy_per_spike", math.inf),
        ({"energy_per_membrane_access": "1e-12"}, "energy_per_membrane_access", "1e-12"),
        ({"time_per_synop": True}, "time_per_synop", True),
        ({"barrier_time": -1e-9}, "barrier_time", -1e-9),
        ({"time_per_neuron_update": [1e-9]}, "time_per_neuron_update", [1e-9]),
        ({"cores": 0}, "cores", 0),
        ({"cores": 2.5}, "cores", 2.5),
        ({"cores": None}, "cores", None),
        ({"neurons_per_core": 0}, "neurons_per_core", 0),
        ({"clock_hz": 0.0, "synops_per_cycle": 1.0}, "clock_hz", 0.0),
        ({"clock_hz": 1e8}, "synops_per_cycle", None),
        ({"time_per_synop": 1e-9, "clock_hz": 1e8, "synops_per_cycle": 1}, "time_per_synop", 1e-9),
        ({"name": ""}, "name", ""),
        ({"name": "two words"}, "name", "two words"),
        ({"source": 3}, "source", 3),
    ],
)
def test_a_bad_profile_field_is_a_parameter_error_naming_it(fields: dict[str, Any], field: str, value: Any) -> None:
    kwargs = {"name": "chip", **fields}
    with pytest.raises(asyncsnn.ParameterError) as info:
        HardwareProfile(**kwargs)
    assert info.value.field == field
    if value == "nan":
        assert math.isnan(info.value.value)
    else:
        assert info.value.value == value
    assert field in str(info.value)


def test_from_dict_refuses_unknown_and_missing_keys() -> None:
    with pytest.raises(asyncsnn.ParameterError) as info:
        HardwareProfile.from_dict({"name": "chip", "energy_per_synapse": 1e-12})
    assert info.value.field == "energy_per_synapse"
    with pytest.raises(asyncsnn.ParameterError) as info:
        HardwareProfile.from_dict({"energy_per_synop": 1e-12})
    assert info.value.field == "name"
    with pytest.raises(asyncsnn.ParameterError):
        HardwareProfile.from_dict([("name", "chip")])  # type: ignore[arg-type]


def test_profiles_are_read_only_and_resolved_by_name() -> None:
    with pytest.raises(TypeError):
        PROFILES["loihi"] = LOIHI  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        LOIHI.energy_per_synop = 0.0  # type: ignore[misc]
    assert [p.name for p in resolve_profiles(["seneca,loihi", "loihi"])] == ["seneca", "loihi"]
    assert [p.name for p in resolve_profiles(["all"])] == list(PROFILES)
    with pytest.raises(asyncsnn.ParameterError) as info:
        resolve_profiles(["truenorth"])
    assert (info.value.field, info.value.value) == ("profile", "truenorth")
    other = dataclasses.replace(LOIHI, barrier_time=465e-9)
    with pytest.raises(asyncsnn.ParameterError, match="two different profiles"):
        resolve_profiles(["loihi", other])


def test_estimate_refuses_a_network_that_did_not_make_the_result() -> None:
    net, x = _two_layer()
    res = asyncsnn.infer(net, x)
    other = asyncsnn.Network.sequential((1,), [asyncsnn.Dense(np.ones((3, 1)))])
    with pytest.raises(asyncsnn.ParameterError) as info:
        estimate(res, other, LOIHI)
    assert info.value.field == "network"
    with pytest.raises(asyncsnn.ParameterError) as info:
        estimate(res, net, LOIHI, scheduler="lifo")  # type: ignore[arg-type]
    assert info.value.field == "scheduler"
    with pytest.raises(asyncsnn.ParameterError) as info:
        estimate(res, net, "truenorth")
    assert info.value.field == "profile"


def test_an_empty_batch_gives_nan_means_without_warnings() -> None:
    net, _ = _two_layer()
    dims = {"T": 2, "n_out": 1, "P": 2, "n_proj": 2}
    arrays = {
        name: np.zeros((0, *(dims[d] for d in shape)), dtype=np.int64)
        for name, shape in asyncsnn.result.COUNTER_FIELDS.items()
    }
    res = asyncsnn.InferenceResult(arrays, labels=None, engine="rust", options={"scheduler": "momentum"})
    rep = estimate(res, net, LOIHI)
    assert isinstance(rep, CostReport)
    assert rep.energy_per_inference.shape == (0,)
    assert math.isnan(rep.mean_energy_per_inference)
    assert math.isnan(rep.mean_time_to_decision)


def test_the_docstring_examples_run() -> None:
    result = doctest.testmod(asyncsnn.cost, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0


def test_the_code_blocks_of_docs_cost_md_run() -> None:
    text = (ROOT / "docs" / "cost.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    namespace: dict[str, object] = {}
    for block in blocks:  # the blocks build on each other
        exec(compile(block, "cost.md", "exec"), namespace)


_PREFIX = {"p": 1e-12, "n": 1e-9, "µ": 1e-6, "m": 1e-3, "": 1.0}


def _doc_value(cell: str) -> float | None:
    cell = cell.strip()
    if cell == "—":
        return None
    number, _, unit = cell.partition(" ")
    return float(number) * (_PREFIX[unit[:-1]] if unit else 1.0)


def test_the_profile_table_of_docs_cost_md_equals_profiles() -> None:
    text = (ROOT / "docs" / "cost.md").read_text()
    table = text.split("| field | loihi | seneca |", 1)[1].split("\n\n", 1)[0]
    rows = [line.strip("|").split("|") for line in table.strip().splitlines()[1:]]
    fields = [f.name for f in dataclasses.fields(HardwareProfile) if f.name not in ("name", "source")]
    assert [r[0].strip() for r in rows] == fields
    for field, loihi, seneca in rows:
        for profile, cell in ((PROFILES["loihi"], loihi), (PROFILES["seneca"], seneca)):
            documented, actual = _doc_value(cell), getattr(profile, field.strip())
            if documented is None or actual is None:
                assert documented is actual is None, (profile.name, field, cell, actual)
            else:
                assert actual == pytest.approx(documented, rel=1e-12), (profile.name, field, cell)


def test_reproduce_cells_carry_the_cost_columns(tmp_path: Path) -> None:
    """evaluate_cell prices every shipped profile; table.md and results.csv add their columns at the end."""
    from asyncsnn.reproduce import COST_KEYS, _write_csv, _write_table, evaluate_cell

    rng = np.random.default_rng(1)
    net = random_grid_network(rng, "dense")
    x = random_count_input(rng, net, batch=6, timesteps=3)
    # Labels the layered run predicts (class 0 where silent): the times to correct exist.
    y = np.maximum(asyncsnn.infer(net, x, scheduler="layered").predictions, 0)
    cells = [evaluate_cell(net, x, y, "layered", inference, "drain", 2, 0) for inference in ("layered", "momentum")]
    for cell in cells:
        assert list(cell.cost) == list(PROFILES)
        res = asyncsnn.infer(net, x, scheduler=cell.inference, forward_group_size=2, labels=y)
        rep = estimate(res, net, PROFILES["loihi"])
        assert cell.cost["loihi"]["energy_per_inference_j"] == rep.mean_energy_per_inference
        assert cell.cost["loihi"]["time_per_inference_s"] == rep.mean_time_per_inference
        assert cell.cost["seneca"]["time_to_decision_s"] is None
        assert list(cell.cost["loihi"]) == list(COST_KEYS)
        assert cell.cost["loihi"]["time_to_first_output_s"] == rep.mean_time_to_first_output
        assert cell.cost["loihi"]["time_to_correct_s"] == rep.mean_time_to_correct > 0
        assert cell.cost["loihi"]["time_to_decision_s"] == rep.mean_time_to_decision
        assert cell.cost["seneca"]["energy_to_decision_j"] == estimate(res, net, "seneca").mean_energy_to_decision
    table = _write_table(tmp_path / "table.md", cells).splitlines()
    head = [h.strip() for h in table[0].strip("|").split("|")]
    assert head[:3] == ["training", "inference", "stop"]
    assert head[-3:] == ["energy/inf. loihi (µJ)", "energy/inf. seneca (µJ)", "time to decision loihi (µs)"]
    assert table[1].count("---") == len(head)
    assert all(len(line.strip("|").split("|")) == len(head) for line in table[2:])
    _write_csv(tmp_path / "results.csv", cells)
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["training", "inference", "stop"]
    assert "cost" not in header
    assert header[-2 * len(COST_KEYS) :] == [f"{k}_{n}" for n in PROFILES for k in COST_KEYS]
    assert {"time_to_correct_s_loihi", "time_to_decision_s_loihi", "energy_to_decision_j_seneca"} <= set(header)


def test_report_arrays_are_read_only() -> None:
    net, x = _two_layer()
    rep = estimate(asyncsnn.infer(net, x), net, LOIHI)
    for array in (rep.energy_per_inference, rep.time_to_first_output, rep.barriers, rep.energy_terms["spikes"]):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1.0
