"""What every phase of one :func:`~asyncsnn.torch.engine.run` call reads: the run's constants."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from asyncsnn._prepare import PreparedOptions, Scheduler
from asyncsnn.exceptions import EngineError
from asyncsnn.torch.engine.counters import CounterColumns
from asyncsnn.torch.engine.delivery import Delivery
from asyncsnn.torch.engine.plan import Plan
from asyncsnn.torch.surrogate import Surrogate

__all__ = ["RunContext"]


@dataclass
class RunContext:
    """The constants of one run, and the overflow failures it has recorded (R8.3).

    Attributes
    ----------
    plan, pt
        The network and its constant tables on the run's device.
    opts
        The validated options.
    columns
        The layout of the per-timestep counter tables.
    delivery
        Currents of input frames and selected groups.
    surrogate
        The surrogate derivative when the run records a graph, else ``None``.
    drop_p
        float64 ``[N]``: the refractory dropout probability of each neuron (R4.6), or
        ``None`` when dropout is off.
    rust_kernels
        Run the forward step and the table deliveries through the Rust kernels where
        they apply (the host backend).
    sample_offset
        Position in the caller's batch of the run's first sample (error messages).
    bias
        float32 ``[N]``: the bias of every neuron (R1.4; differentiable when trained),
        ``None`` when no population settles.
    surrogate_terms
        ``"fired"`` (default) or ``"every_step"``: which surrogate terms the graph keeps
        (section 9, :func:`~asyncsnn.torch.engine.step.open_terms`).
    input_risk
        Whether an input product ``x * w`` can overflow float32 (R8.3,
        :meth:`~asyncsnn.torch.engine.delivery.Delivery.input_risk`).
    failures
        Row -> the first ``(t, k, neuron)`` whose membrane overflowed (R8.3).
    """

    plan: Plan
    pt: dict[str, torch.Tensor]
    opts: PreparedOptions
    columns: CounterColumns
    delivery: Delivery
    surrogate: Surrogate | None
    drop_p: torch.Tensor | None
    rust_kernels: bool
    sample_offset: int
    bias: torch.Tensor | None = None
    surrogate_terms: str = "fired"
    input_risk: bool = False
    failures: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        plan = self.plan
        self.grad = self.surrogate is not None
        self.every_step = self.grad and self.surrogate_terms == "every_step"
        self.layered = self.opts.scheduler is Scheduler.LAYERED
        self.fifo = self.opts.scheduler is Scheduler.FIFO
        self.momentum = self.opts.scheduler is Scheduler.MOMENTUM
        self.jitter = self.opts.jitter if self.momentum else 0.0
        self.out_slice = slice(plan.out_offset, plan.out_offset + plan.n_outputs)
        # Recurrent projections (R4.9): under layered their current is carried to the next
        # timestep (rows.carry) and does not settle the target; otherwise it is delivered
        # like a forward one, and the silent spikes wait for every population that can
        # still reach a population through one (Plan._silent_ranks).
        self.carry = self.layered and plan.recurrent
        # A recurrent projection leaves the output population: its spikes are delivered (taken
        # out of Q), so the differentiable output counts are kept apart (RowSet.out_spikes).
        self.output_is_source = plan.n_populations in plan.source_populations
        if plan.any_settling:
            self.targets = self.pt["targets_layered_f"] if self.layered else self.pt["targets_f"]
        rec_unlayered = plan.recurrent and not self.layered
        self.silent_rank = self.pt["silent_rank_f"] if rec_unlayered else self.pt["rank_f"]
        self.silent_ranks_monotone = not rec_unlayered  # rank never grows with the neuron id
        # The smallest rank P + 1 - p of a source population (silent spikes).
        self.min_source_rank = float(self.pt["src_rank_f"].min()) if plan.source_populations else math.inf

    def record_overflow(self, batch_rows: torch.Tensor, bad: torch.Tensor, t: int, k: int) -> None:
        """Record the first failure (R8.3) of each row of ``bad [n, N]`` (lowest neuron id first)."""
        r_idx, q_idx = bad.nonzero(as_tuple=True)  # row-major: a row's lowest neuron comes first
        for r, q in zip(r_idx.tolist(), q_idx.tolist()):
            self.failures.setdefault(int(batch_rows[r]), (t, k, q))

    def overflow_error(self) -> EngineError:
        """The R8.3 error of the lowest failing row."""
        row = min(self.failures)
        t, k, q = self.failures[row]
        plan = self.plan
        pop = plan.population_of(q)
        location = (
            f"sample {self.sample_offset + row}, timestep {t}, forward step {k}, population {pop}, "
            f"neuron {q - plan.offsets[pop]}"
        )
        return EngineError(f"{location}: membrane overflows", field="membrane", value=None, location=location)
