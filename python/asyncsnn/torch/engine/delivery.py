"""Delivery: the currents of the selected neurons (R4.2, R4.3.4), overflow-exact (R8.3).

:class:`Delivery` turns an input frame, or the group selected at the end of a forward
step with its multiplicities, into the currents ``[rows, N]`` of the next
integration. It touches the selected neurons only: when all LIF-to-LIF projections
are Dense, their weights form one table ``[N, span]`` (row = source neuron) and a
step's currents are one ``embedding_bag`` -- the multiplicity-weighted sum of the
selected rows, never a matmul over all neurons -- fused with taking the group out of
``Q`` in one autograd node whose table gradient is accumulated in place across steps
(:func:`~asyncsnn.torch._kernels.deliver`; on the host backend, one Rust call forward
and one backward). Otherwise each source population is handled alone:
``embedding_bag`` over ``W.T`` for Dense, multiplicities scattered into the emitted map
and convolved for Conv2d and pooling. The layered scheduler uses a dense matmul/conv
of the emitted rows (:meth:`Delivery.dense`). Currents of a step are summed into ``I``
in float32 before they touch ``V`` (R8.2).

**Overflow** (R8.3). Matrix products may fuse a product into the running sum (FMA) and
so hide a product ``x * w`` or ``m * w`` that overflows on its own; when the largest
input value (or, with refractory dropout, twice the largest weight) times the largest
weight could reach float32's range, the targets of such products are found exactly
(float64 products of float32 values, :func:`overflowing_products`) and their current
is set to NaN, which the forward step then reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from asyncsnn.torch._kernels import SettleSpec, TableGrad, TablePart, deliver, take, zeros_f32
from asyncsnn.torch.engine.plan import Plan, ProjectionPlan, apply_projection
from asyncsnn.torch.engine.rows import RowSet
from asyncsnn.torch.surrogate import Surrogate

__all__ = ["F32_OVERFLOW", "Delivery", "overflowing_products", "source_weight_max"]

F32_OVERFLOW = 2.0**128 - 2.0**103
"""The smallest magnitude that float32 rounds to infinity (half an ulp above the largest float32)."""


def source_weight_max(pp: ProjectionPlan, w: torch.Tensor | None) -> torch.Tensor | None:
    """float64 ``[n_source]`` (conv: ``[c_in]``): the largest ``|w|`` of each source's synapses."""
    if w is None:  # pooling: weights <= 1, a product never exceeds its (finite) source value
        return None
    wa = w.detach().abs()
    return (wa.amax(0) if pp.kind == "dense" else wa.amax((0, 2, 3))).to(torch.float64)  # the max is exact


def overflowing_products(
    pp: ProjectionPlan, w: torch.Tensor, e: torch.Tensor, wmax: torch.Tensor
) -> torch.Tensor | None:
    """The targets reached by a product ``e_j * w`` that overflows float32 (R8.3).

    ``e [r, n_source]`` are source values >= 0 (input values or multiplicities) and
    ``wmax`` is :func:`source_weight_max`. A float32 product of two float32 is exact
    in float64, so the test is exact. Matrix products may fuse a product with the
    running sum (FMA) and so hide its overflow; the engine marks these targets
    instead. Returns bool ``[r, n_target]``, or ``None`` when no product overflows.
    """
    e64 = e.detach().to(torch.float64)
    r = e64.shape[0]
    if pp.kind == "dense":
        emax = e64.amax(0)
        if not bool((emax * wmax >= F32_OVERFLOW).any()):
            return None
        wa = w.detach().abs().to(torch.float64)
        q_idx, j_idx = (wa * emax >= F32_OVERFLOW).nonzero(as_tuple=True)  # the candidate synapses
        hit = e64[:, j_idx] * wa[q_idx, j_idx] >= F32_OVERFLOW  # [r, candidates]
        hit_rows, cand = hit.nonzero(as_tuple=True)
        flags = torch.zeros(r, wa.shape[0], dtype=torch.bool, device=e.device)
        flags[hit_rows, q_idx[cand]] = True
        return flags
    x = e64.reshape(r, *pp.source_shape)
    emax = x.amax((0, 2, 3))
    if not bool((emax * wmax >= F32_OVERFLOW).any()):
        return None
    ka = w.detach().abs().to(torch.float64)
    c_out, _, kh, kw = ka.shape
    out: torch.Tensor | None = None
    for o, c, ky, kx in (ka * emax[None, :, None, None] >= F32_OVERFLOW).nonzero().tolist():
        hot = torch.zeros(1, 1, kh, kw, dtype=torch.float64, device=e.device)
        hot[0, 0, ky, kx] = 1.0
        src = (x[:, c : c + 1] * ka[o, c, ky, kx] >= F32_OVERFLOW).to(torch.float64)
        reached = F.conv2d(src, hot, stride=pp.stride, padding=pp.padding)[:, 0] > 0  # [r, oh, ow]
        if out is None:
            out = torch.zeros(r, c_out, *reached.shape[1:], dtype=torch.bool, device=e.device)
        out[:, o] |= reached
    assert out is not None
    return out.reshape(r, -1)


class Delivery:
    """Turns input frames and selected neurons with their multiplicities into currents ``[n, N]``.

    When every source population projects through Dense layers only and the table is
    small, all LIF-to-LIF weights are laid out once per run as one table ``[N, span]``
    (row = source neuron, columns = the global ids from the first target on), and a
    step's currents are one ``embedding_bag``: the weighted sum of the selected rows
    (its gradient is accumulated in place, :class:`~asyncsnn.torch._kernels.TableGrad`).
    Otherwise each source population is handled on its own: ``embedding_bag`` over
    ``W.T`` for Dense, scatter into the emitted map and convolve for Conv2d / pooling.

    Parameters
    ----------
    plan, pt
        The network (:class:`~asyncsnn.torch.engine.plan.Plan`) and its tables on the
        run's device.
    weights
        One tensor per projection (``None`` for pooling), as for
        :func:`~asyncsnn.torch.engine.run`.
    rust
        Deliver through the table with the Rust kernels (the host backend).
    """

    TABLE_LIMIT = 1 << 23  # entries of the global table (32 MiB of float32)

    def __init__(
        self, plan: Plan, pt: dict[str, torch.Tensor], weights: Sequence[torch.Tensor | None], rust: bool = False
    ) -> None:
        self.plan, self.pt, self.weights, self.rust = plan, pt, weights, rust
        lif = [pp for pp in plan.projections if pp.source > 0]
        self.table: torch.Tensor | None = None
        self.holder: TableGrad | None = None
        self.parts: list[TablePart] = []
        self.col0 = min((plan.offsets[pp.target] for pp in lif), default=0)
        span = plan.n_neurons - self.col0
        if lif and all(pp.kind == "dense" for pp in lif) and plan.n_neurons * span <= self.TABLE_LIMIT:
            ws: list[torch.Tensor] = []
            blocks = []
            for pp in lif:
                w = weights[pp.index]
                assert w is not None
                ws.append(w)
                blocks.append((plan.offsets[pp.source], plan.offsets[pp.target] - self.col0))
            table = zeros_f32((plan.n_neurons, span), ws[0].device)
            for w, (r0, c0) in zip(ws, blocks):
                table[r0 : r0 + w.shape[1], c0 : c0 + w.shape[0]] += w.detach().t()
            self.table = table
            if torch.is_grad_enabled() and any(w.requires_grad for w in ws):
                self.holder = TableGrad(table, blocks, ws)
            self.parts = [TablePart(0, 0, span, table)]  # the table as one block
        self._wt: dict[int, torch.Tensor] = {}
        self._specs: dict[tuple[tuple[int, ...], bool, bool], SettleSpec] = {}
        self._syn_targets: dict[tuple[int, bool], tuple[tuple[slice, Callable[[torch.Tensor], torch.Tensor]], ...]] = {}
        # R8.3: the largest |w| of each source, and whether a spike delivery can overflow
        # float32 at all (only a multiplicity m >= 2, i.e. refractory dropout, makes m * w
        # larger than w).
        self.wmax = [source_weight_max(pp, weights[pp.index]) for pp in plan.projections]
        lif_max = [float(m.max()) for pp, m in zip(plan.projections, self.wmax) if pp.source > 0 and m is not None]
        self.lif_risk = 2.0 * max(lif_max, default=0.0) >= F32_OVERFLOW

    # -- input (R4.2) ---------------------------------------------------------------
    def input_risk(self, frames: torch.Tensor) -> bool:
        """Whether an input product ``x * w`` of ``frames [B, T, n_in]`` can overflow float32 (R8.3)."""
        plan = self.plan
        in_wmax = [float(m.max()) for pp, m in zip(plan.projections, self.wmax) if pp.source == 0 and m is not None]
        return frames.shape[1] > 0 and float(frames.amax()) * max(in_wmax, default=0.0) >= F32_OVERFLOW

    def frame(self, x_t: torch.Tensor, risk: bool) -> torch.Tensor:
        """Currents ``[n, N]`` of the input frame ``x_t [n, n_in]`` (R4.2), marked when ``risk`` (R8.3)."""
        parts: dict[int, list[torch.Tensor]] = {}
        for pp in self.plan.outgoing[0]:
            parts.setdefault(pp.target, []).append(apply_projection(pp, self.weight(pp), x_t))
        cur = self.assemble(parts, x_t.shape[0])
        return self.mark_overflow(cur, x_t, [0]) if risk else cur

    # -- a selected group (R4.3.4) ---------------------------------------------------
    def deliver_group(
        self,
        rows: RowSet,
        group_rows: torch.Tensor,
        group_neurons: torch.Tensor,
        flat: torch.Tensor,
        offsets: torch.Tensor,
        grad: bool,
    ) -> None:
        """Take the selected entries out of ``rows.q`` and set ``rows.cur`` to their currents.

        ``(group_rows[s], group_neurons[s])`` are the selected neurons, sorted by row
        (within a row by id), ``flat`` their positions ``row * N + neuron``, ``offsets``
        the first entry of each row; ``grad``: record the graph.
        """
        mult: torch.Tensor | None = None
        if self.table is not None:
            if self.lif_risk:
                mult = rows.q.detach().reshape(-1)[flat]
            rows.q, rows.cur = deliver(
                self.holder, self.parts, rows.q, flat, [(group_rows, group_neurons, offsets)], self.col0, self.rust
            )
        else:
            mult, rows.q = take(rows.q, flat, grad)
            rows.cur = self.selected(group_rows, group_neurons, mult, n_rows=rows.size)
        if mult is not None:
            rows.cur = self.mark_overflow_selected(rows.cur, group_rows, group_neurons, mult)

    def selected(self, rows: torch.Tensor, neurons: torch.Tensor, mult: torch.Tensor, n_rows: int) -> torch.Tensor:
        """Currents of the selected entries ``(rows[s], neurons[s])`` (global ids, sorted by row).

        ``mult [S]`` are their multiplicities; rows without entries receive no current.
        (The table case is :func:`~asyncsnn.torch._kernels.deliver`.)
        """
        plan = self.plan
        pop_sel = self.pt["pop_of"][neurons] if len(plan.source_populations) > 1 else None
        parts: dict[int, list[torch.Tensor]] = {}
        for p in plan.source_populations:
            r_p, c_p, m_p = rows, neurons, mult
            if pop_sel is not None:
                idx = (pop_sel == p).nonzero().squeeze(1)
                if not idx.numel():
                    continue
                r_p, c_p, m_p = rows[idx], neurons[idx], mult[idx]
            n_src = plan.sizes[p]
            local = c_p - plan.offsets[p]
            emitted: torch.Tensor | None = None
            offsets: torch.Tensor | None = None
            for pp in plan.outgoing[p]:
                if pp.kind == "dense":
                    if offsets is None:
                        counts = torch.bincount(r_p, minlength=n_rows)
                        offsets = torch.cumsum(counts, 0) - counts
                    cur = F.embedding_bag(local, self._transposed(pp), offsets, mode="sum", per_sample_weights=m_p)
                else:
                    if emitted is None:
                        emitted = torch.zeros(n_rows, n_src, dtype=mult.dtype, device=mult.device)
                        emitted = emitted.index_put((r_p, local), m_p)
                    cur = apply_projection(pp, self.weight(pp), emitted)
                parts.setdefault(pp.target, []).append(cur)
        return self.assemble(parts, n_rows)

    def dense(self, emitted: torch.Tensor, populations: Sequence[int], recurrent: bool | None = None) -> torch.Tensor:
        """Currents of dense source activity ``emitted [n, N]`` from the given populations.

        ``recurrent``: only the recurrent (``True``) or forward (``False``) projections;
        ``None``: all.
        """
        plan = self.plan
        sources = [(p, emitted[:, plan.offsets[p] : plan.offsets[p] + plan.sizes[p]]) for p in populations]
        return self.dense_of(sources, emitted.shape[0], recurrent)

    def dense_carried(
        self, emitted: torch.Tensor, populations: Sequence[int], carry: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`dense` split into delivered and carried currents (``layered``, R4.9), in one pass.

        With ``carry``: ``dense(emitted, populations, False)`` and ``dense(emitted,
        populations, True)``, the second ``None`` when no recurrent projection leaves
        ``populations``; else ``dense(emitted, populations)`` and ``None``.
        """
        plan = self.plan
        cur: list[tuple[int, torch.Tensor]] = []
        rec: list[tuple[int, torch.Tensor]] = []
        for p in populations:
            cols = slice(plan.offsets[p], plan.offsets[p] + plan.sizes[p])
            cur.append((p, emitted[:, cols]))
            if carry and p in plan.recurrent_sources:
                rec.append((p, emitted[:, cols]))  # a view of its own: the gradient sums of two passes
        n_rows = emitted.shape[0]
        delivered = self.dense_of(cur, n_rows, False if carry else None)
        return delivered, (self.dense_of(rec, n_rows, True) if rec else None)

    def dense_of(
        self, sources: Sequence[tuple[int, torch.Tensor]], n_rows: int, recurrent: bool | None = None
    ) -> torch.Tensor:
        """:meth:`dense` of each source population's activity given apart.

        ``sources``: ``(population, activity [n_rows, size])`` pairs; ``recurrent``
        selects projections as in :meth:`dense`.
        """
        parts: dict[int, list[torch.Tensor]] = {}
        for p, e_p in sources:
            for pp in self.plan.outgoing[p]:
                if recurrent is None or pp.recurrent == recurrent:
                    parts.setdefault(pp.target, []).append(apply_projection(pp, self.weight(pp), e_p))
        return self.assemble(parts, n_rows)

    def assemble(self, parts: dict[int, list[torch.Tensor]], n_rows: int) -> torch.Tensor:
        """Concatenate per-population currents into ``[n, N]`` (zeros where none)."""
        plan = self.plan
        blocks = []
        for p in range(1, plan.n_populations + 1):
            lst = parts.get(p)
            if lst:
                blk = lst[0]
                for extra in lst[1:]:
                    blk = blk + extra
                blocks.append(blk)
            else:
                blocks.append(torch.zeros(n_rows, plan.sizes[p], dtype=torch.float32, device=self.pt["theta"].device))
        return torch.cat(blocks, 1)

    # -- overflow (R8.3) -------------------------------------------------------------
    def overflow_flags(
        self, emitted: torch.Tensor, populations: Sequence[int], recurrent: bool | None = None
    ) -> torch.Tensor | None:
        """Mark the neurons reached by an overflowing product (R8.3): bool ``[n, N]``, or ``None``.

        ``emitted`` holds the source values: the input frame ``[n, n_in]`` for
        ``populations = [0]``, else multiplicities ``[n, N]`` by global id;
        ``recurrent`` selects projections as in :meth:`dense`.
        """
        plan = self.plan
        flags: torch.Tensor | None = None
        for p in populations:
            e_p = emitted if p == 0 else emitted[:, plan.offsets[p] : plan.offsets[p] + plan.sizes[p]]
            for pp in plan.outgoing[p]:
                wmax = self.wmax[pp.index]
                if wmax is None or (recurrent is not None and pp.recurrent != recurrent):
                    continue
                hit = overflowing_products(pp, self.weight(pp), e_p, wmax)
                if hit is None:
                    continue
                if flags is None:
                    flags = torch.zeros(emitted.shape[0], plan.n_neurons, dtype=torch.bool, device=emitted.device)
                o = plan.offsets[pp.target]
                flags[:, o : o + plan.sizes[pp.target]] |= hit
        return flags

    def mark_overflow(
        self, cur: torch.Tensor, emitted: torch.Tensor, populations: Sequence[int], recurrent: bool | None = None
    ) -> torch.Tensor:
        """``cur`` with NaN at the neurons reached by an overflowing product (R8.3)."""
        flags = self.overflow_flags(emitted, populations, recurrent)
        if flags is None:
            return cur
        return torch.where(flags, torch.full((), math.nan, dtype=cur.dtype, device=cur.device), cur)

    def mark_overflow_selected(
        self, cur: torch.Tensor, rows: torch.Tensor, neurons: torch.Tensor, mult: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`mark_overflow` for the selected entries ``(rows, neurons)`` with multiplicities ``mult``."""
        if not self.lif_risk:
            return cur
        emitted = torch.zeros(cur.shape[0], self.plan.n_neurons, dtype=torch.float32, device=cur.device)
        emitted[rows, neurons] = mult.detach().to(torch.float32)
        return self.mark_overflow(cur, emitted, self.plan.source_populations)

    # -- weights ---------------------------------------------------------------------
    def weight(self, pp: ProjectionPlan) -> torch.Tensor:
        """The projection's weight tensor (the fixed kernel for pooling)."""
        w = self.weights[pp.index]
        return self.pt[f"pool{pp.index}"] if w is None else w

    def _transposed(self, pp: ProjectionPlan) -> torch.Tensor:
        if pp.index not in self._wt:
            self._wt[pp.index] = self.weight(pp).t().contiguous()
        return self._wt[pp.index]

    # -- silent spikes (section 9) ---------------------------------------------------
    def settle_spec(
        self, populations: tuple[int, ...], end: bool, surrogate: Surrogate, carried: bool = False
    ) -> SettleSpec:
        """The :class:`~asyncsnn.torch._kernels.SettleSpec` of silent spikes of ``populations``.

        ``end``: the output population emits too (with its outgoing projections, when
        recurrent ones leave it). ``carried``: the recurrent projections' currents are
        carried (``layered``, R4.9), so their silent currents do not reach the membranes
        (:mod:`~asyncsnn.torch.engine.silent` adds them to ``C``). The silent currents
        into a population with a synaptic current (R4.12) are left out too:
        :mod:`~asyncsnn.torch.engine.silent` passes them through ``S``.
        """
        key = (populations, end, carried)
        if key not in self._specs:
            plan, theta = self.plan, self.pt["theta"]

            def columns(p: int) -> slice:
                return slice(plan.offsets[p], plan.offsets[p] + plan.sizes[p])

            def targets(p: int) -> tuple[tuple[slice, Callable[[torch.Tensor], torch.Tensor]], ...]:
                out = []
                for pp in plan.outgoing[p]:
                    # A carried current goes to C, one into a synaptic current to S
                    # (silent.py): neither reaches the membranes here.
                    if not (carried and pp.recurrent) and not plan.synaptic[pp.target]:
                        out.append((columns(pp.target), self._transposed_map(pp)))
                    w = self.weights[pp.index]
                    if self.holder is None and w is not None and w.requires_grad:
                        anchors.append(w)
                return tuple(out)

            anchors: list[torch.Tensor] = []
            sources = [(columns(p), theta[columns(p)], targets(p)) for p in populations]
            out = plan.n_populations
            output = (columns(out), theta[columns(out)], targets(out)) if end else None
            if self.holder is not None:
                anchors.append(self.holder.token)
            resets = tuple(plan.resets[p] for p in (*populations, out))
            self._specs[key] = SettleSpec(tuple(sources), output, surrogate, tuple(anchors), resets)
        return self._specs[key]

    def synaptic_targets(
        self, p: int, carried: bool
    ) -> tuple[tuple[slice, Callable[[torch.Tensor], torch.Tensor]], ...]:
        """The silent currents of population ``p`` that pass through a synaptic current (R4.12).

        ``(columns of the target population, transposed projection)`` for every
        projection out of ``p`` into a population with a synaptic current, but the
        carried recurrent ones when ``carried`` (those go to ``C``); the complement of
        :meth:`settle_spec`'s targets (:mod:`~asyncsnn.torch.engine.silent`).
        """
        key = (p, carried)
        if key not in self._syn_targets:
            plan = self.plan
            self._syn_targets[key] = tuple(
                (
                    slice(plan.offsets[pp.target], plan.offsets[pp.target] + plan.sizes[pp.target]),
                    self._transposed_map(pp),
                )
                for pp in plan.outgoing[p]
                if plan.synaptic[pp.target] and not (carried and pp.recurrent)
            )
        return self._syn_targets[key]

    def _transposed_map(self, pp: ProjectionPlan) -> Callable[[torch.Tensor], torch.Tensor]:
        """``g [rows, n_target] -> g W`` for the projection (the transpose of :func:`apply_projection`)."""
        w = self.weight(pp).detach()
        if pp.kind == "dense":
            return lambda g: g @ w
        n_src = self.plan.sizes[pp.source]

        def transposed(g: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                z = torch.zeros(g.shape[0], n_src, dtype=g.dtype, device=g.device, requires_grad=True)
                (g_z,) = torch.autograd.grad(apply_projection(pp, w, z), z, g)
            return g_z

        return transposed
