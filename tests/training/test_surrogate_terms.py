"""``surrogate_terms``: which surrogate terms the torch engine's gradient keeps (section 9).

* The forward (spikes, output counts, every counter) is the same under ``"fired"`` and
  ``"every_step"``, on both backends, with every scheduler, also with settling
  populations and refractory dropout.
* With scheduler ``"layered"`` (and with any scheduler when ``F`` covers the widest
  population) ``"every_step"`` is ordinary BPTT through plain layer-by-layer torch.
* On an asynchronous scheduler the gradients of both options equal autograd through a
  plain-torch re-implementation of the forward steps (``fifo``, small dense networks,
  one sample at a time): ``"every_step"`` takes the spike function at every forward step
  in which a non-refractory neuron is integrated.
* The ratio and cosine between the two options' gradients are printed (not asserted).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch

import asyncsnn
from _torch import bptt_counts
from asyncsnn._prepare import prepare_given_options
from asyncsnn.exceptions import ParameterError
from asyncsnn.testing import assert_results_equal
from asyncsnn.torch import AsyncSNN, ATan, FastSigmoid, Plan, rate_loss, run, train
from asyncsnn.torch.surrogate import spike

TERMS = ("fired", "every_step")


def options(net: asyncsnn.Network, **kw: Any) -> Any:
    return prepare_given_options(net, **{"scheduler": "layered", "forward_group_size": 1, **kw})


def dense_problem(
    seed: int, sizes: tuple[int, ...] = (12, 16, 10, 4), batch: int = 6, timesteps: int = 7
) -> tuple[asyncsnn.Network, list[np.ndarray], torch.Tensor, torch.Tensor]:
    """A dense network with per-neuron thresholds and leaks, and a batch of count inputs."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(0.1, 0.5, (b, a)).astype(np.float32) for a, b in itertools.pairwise(sizes)]
    thresholds = [rng.uniform(0.5, 1.2, n).astype(np.float32) for n in sizes[1:]]
    betas = [rng.uniform(0.7, 1.0, n).astype(np.float32) for n in sizes[1:]]
    net = asyncsnn.Network.sequential(
        input_shape=(sizes[0],), layers=[asyncsnn.Dense(w) for w in ws], threshold=thresholds, beta=betas
    )
    shape = (batch, timesteps, sizes[0])
    x = torch.from_numpy(((rng.random(shape) < 0.4) * rng.integers(1, 3, shape)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, sizes[-1], batch))
    return net, ws, x, y


def engine_grads(
    net: asyncsnn.Network, ws: list[np.ndarray], x: torch.Tensor, y: torch.Tensor, terms: str, **kw: Any
) -> tuple[Any, tuple[torch.Tensor, ...]]:
    backend = kw.pop("backend", "auto")
    sur = kw.pop("surrogate", ATan())
    w = [torch.tensor(a, requires_grad=True) for a in ws]
    out = run(Plan(net), w, x, options(net, **kw), labels=y, surrogate=sur, backend=backend, surrogate_terms=terms)
    return out, torch.autograd.grad(rate_loss(out.counts, y), w)


def async_counts(
    net: asyncsnn.Network, weights: list[torch.Tensor], x: torch.Tensor, f: int, surrogate: Any, every_step: bool
) -> torch.Tensor:
    """Plain re-implementation of a dense chain under ``fifo`` with group size ``f``, drain.

    One sample at a time, one neuron vector per population. Per forward step: the
    integrated neurons (non-refractory, non-zero current) first take the term of the
    membrane they leave if it has none yet (``every_step``), then ``U = V + I``, fire
    ``U > theta``, ``V = U (1 - s)``, ``Q += s``; the pending neurons are delivered
    ``f`` at a time in fifo order, ``I = Q_j W[:, j]``. A population is settled when no
    neuron of a lower population is pending: its non-refractory neurons then emit one
    zero-valued spike at their final membrane, whose (zero) current enters the
    non-refractory targets' membranes; the output population's joins its counts at the
    end of the timestep.
    """
    pops = net.populations
    n_pop = len(pops)
    theta = [torch.tensor(p.threshold.reshape(-1)) for p in pops]
    beta = [torch.tensor(p.beta.reshape(-1)) for p in pops]
    out_all = []
    for b in range(x.shape[0]):
        v = [torch.zeros(p.size) for p in pops]
        per_t = []
        for t in range(x.shape[1]):
            v = [bt * vi for bt, vi in zip(beta, v)]
            live = [torch.ones(p.size) for p in pops]
            opened = [torch.zeros(p.size) for p in pops]
            q = [torch.zeros(p.size) for p in pops]
            cur: list[torch.Tensor] = [x[b, t] @ weights[0].t()] + [torch.zeros(p.size) for p in pops[1:]]
            pending: list[tuple[int, int]] = []  # (population, neuron), fifo order
            emitted = [False] * n_pop

            while True:
                for p in range(n_pop):
                    integ = ((cur[p] != 0) & (live[p] > 0)).float()
                    if every_step:
                        again = opened[p] * integ
                        s_o = spike(v[p] - theta[p], surrogate) * again
                        v[p] = v[p] - v[p] * s_o
                        q[p] = q[p] + s_o
                    u = v[p] + cur[p] * live[p]
                    fire = ((u > theta[p]) & (live[p] > 0)).float()
                    s = spike(u - theta[p], surrogate) * fire
                    v[p] = u - u * s
                    q[p] = q[p] + s
                    opened[p] = torch.maximum(opened[p], integ) * (1 - fire)
                    live[p] = live[p] - fire
                    if p + 1 < n_pop:
                        pending += [(p, int(i)) for i in fire.nonzero().flatten()]
                lowest = min((p for p, _ in pending), default=n_pop)
                for p in range(min(lowest + 1, n_pop - 1)):  # settled source populations
                    if not emitted[p]:
                        _silent(p, v, live, q, theta, weights, surrogate)
                        emitted[p] = True
                if not pending:
                    break
                group, pending = pending[:f], pending[f:]
                cur = [torch.zeros(p.size) for p in pops]
                for p, j in group:
                    cur[p + 1] = cur[p + 1] + q[p][j] * weights[p + 1][:, j]
                    keep = torch.ones(pops[p].size)
                    keep[j] = 0.0
                    q[p] = q[p] * keep
            _silent(n_pop - 1, v, live, q, theta, weights, surrogate)
            per_t.append(q[n_pop - 1])
        out_all.append(torch.stack(per_t))
    return torch.stack(out_all)


def _silent(
    p: int,
    v: list[torch.Tensor],
    live: list[torch.Tensor],
    q: list[torch.Tensor],
    theta: list[torch.Tensor],
    weights: list[torch.Tensor],
    surrogate: Any,
) -> None:
    """Population ``p``'s zero-valued spikes at its final membrane (in place in the lists)."""
    s0 = spike(v[p] - theta[p], surrogate) * live[p]  # value 0
    v[p] = v[p] - v[p] * s0
    if p + 1 < len(v):
        v[p + 1] = v[p + 1] + (s0 @ weights[p + 1].t()) * live[p + 1]
    else:
        q[p] = q[p] + s0


def cosine(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> tuple[float, float]:
    fa = torch.cat([g.reshape(-1) for g in a]).double()
    fb = torch.cat([g.reshape(-1) for g in b]).double()
    return float(fb.norm() / fa.norm()), float(fa @ fb / (fa.norm() * fb.norm()))


# ------------------------------------------------------------------------- forward identical
@pytest.mark.parametrize("scheduler", ["layered", "fifo", "random", "momentum"])
@pytest.mark.parametrize("backend", ["host", "torch"])
def test_forward_is_the_same_under_both_options(scheduler: str, backend: str) -> None:
    net, ws, x, y = dense_problem(11)
    kw = {"scheduler": scheduler, "forward_group_size": 2, "backend": backend, "seed": 3}
    if scheduler != "layered":
        kw["refractory_dropout"] = 0.3
    outs = [engine_grads(net, ws, x, y, terms, **kw) for terms in TERMS]
    (a, ga), (b, gb) = outs
    assert_results_equal(a.result(y.numpy()), b.result(y.numpy()))
    assert torch.equal(a.counts, b.counts)
    assert all(torch.isfinite(g).all() for g in (*ga, *gb))
    ratio, cos = cosine(ga, gb)
    print(f"\n{scheduler}/{backend}: |every_step| / |fired| = {ratio:.3f}, cosine {cos:.3f}")


@pytest.mark.parametrize("backend", ["host", "torch"])
def test_forward_is_the_same_with_settling_populations(backend: str) -> None:
    net, _, x, y = dense_problem(12)
    rng = np.random.default_rng(0)
    pops = [
        p.__class__.create(p.shape, p.threshold, p.beta, bias=(rng.integers(-64, 65, p.shape) / 256), reset=r)
        for p, r in zip(net.populations, ("zero", "subtract", "subtract_delayed"))
    ]
    net = asyncsnn.Network(net.input_shape, pops, net.projections)
    results = []
    for terms in TERMS:
        model = AsyncSNN.from_network(net)
        out = model(x, scheduler="momentum", forward_group_size=2, labels=y, surrogate_terms=terms)
        rate_loss(out.counts, y).backward()
        results.append((out, [p.grad for p in model.parameters()]))
    (a, ga), (b, gb) = results
    assert_results_equal(a.result(y.numpy()), b.result(y.numpy()))
    assert torch.equal(a.counts, b.counts)
    assert all(g is not None and torch.isfinite(g).all() for g in (*ga, *gb))
    assert any(not torch.equal(g1, g2) for g1, g2 in zip(ga, gb) if g1 is not None and g2 is not None)


# ------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("surrogate", [ATan(), FastSigmoid(slope=2.0)], ids=repr)
@pytest.mark.parametrize(("scheduler", "f"), [("layered", 1), ("momentum", 16), ("fifo", 16)])
def test_every_step_with_layers_in_lock_step_is_plain_bptt(surrogate: Any, scheduler: str, f: int) -> None:
    net, ws, x, y = dense_problem(13)
    out, g_engine = engine_grads(
        net, ws, x, y, "every_step", scheduler=scheduler, forward_group_size=f, surrogate=surrogate
    )
    w_b = [torch.tensor(w, requires_grad=True) for w in ws]
    counts = bptt_counts(net, w_b, x, surrogate)
    assert torch.equal(out.counts, counts)
    assert 0 < counts.sum() < counts.numel()
    for a, b in zip(g_engine, torch.autograd.grad(rate_loss(counts, y), w_b)):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("terms", TERMS)
@pytest.mark.parametrize(("seed", "f"), [(21, 1), (22, 2), (23, 3)])
@pytest.mark.parametrize("backend", ["host", "torch"])
def test_asynchronous_gradients_equal_a_plain_reimplementation(terms: str, seed: int, f: int, backend: str) -> None:
    net, ws, x, y = dense_problem(seed, sizes=(6, 7, 5, 3), batch=3, timesteps=4)
    out, g_engine = engine_grads(net, ws, x, y, terms, scheduler="fifo", forward_group_size=f, backend=backend)
    w_r = [torch.tensor(w, requires_grad=True) for w in ws]
    counts = async_counts(net, w_r, x, f, ATan(), terms == "every_step")
    assert torch.equal(out.counts, counts)
    assert counts.sum() > 0
    for a, b in zip(g_engine, torch.autograd.grad(rate_loss(counts, y), w_r)):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_options_differ_on_an_asynchronous_scheduler_only() -> None:
    net, ws, x, y = dense_problem(14)
    grads = {
        (s, terms): engine_grads(net, ws, x, y, terms, scheduler=s)[1] for s in ("layered", "fifo") for terms in TERMS
    }
    for a, b in zip(grads["layered", "fired"], grads["layered", "every_step"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert any(not torch.allclose(a, b) for a, b in zip(grads["fifo", "fired"], grads["fifo", "every_step"]))


def test_bad_surrogate_terms_are_refused() -> None:
    net, ws, x, y = dense_problem(15)
    with pytest.raises(ParameterError, match="surrogate_terms"):
        engine_grads(net, ws, x, y, "all")
    with pytest.raises(ParameterError, match="surrogate_terms"):
        train(net, (x.numpy(), y.numpy()), epochs=1, surrogate_terms="every", progress=False)


def test_train_accepts_every_step() -> None:
    net, ws, x, y = dense_problem(16)
    trained, history = train(
        net, (x.numpy(), y.numpy()), epochs=1, batch_size=3, surrogate_terms="every_step", progress=False
    )
    assert len(history.loss) == 1
    assert not np.array_equal(trained.projections[0].layer.weight, ws[0])


# ------------------------------------------------------------------------- the bench script
def test_surrogate_terms_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    import runpy
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benches" / "surrogate_terms.py"
    bench = runpy.run_path(str(path))
    with pytest.raises(SystemExit):
        bench["main"](["--help"])
    assert "surrogate_terms" in capsys.readouterr().out
    bench["main"](["--seeds", "0", "--epochs", "1", "--train-samples", "64", "--test-samples", "32", "--threads", "1"])
    out = capsys.readouterr().out
    assert "seed 0 fired" in out
    assert "seed 0 every_step" in out
    assert "mean every_step" in out
