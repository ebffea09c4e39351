//! Binding of the torch engine's CPU kernels (`crate::train_kernels`): numpy views of
//! the torch tensors in, checked by the kernels' own checks, the kernels run with the
//! interpreter released.

use numpy::ndarray::Dimension;
use numpy::{
    Element, IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray, PyReadonlyArray1,
    PyReadonlyArray2, PyReadwriteArray, PyReadwriteArray1, PyReadwriteArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::errors::contiguous;
use crate::train_kernels::{
    self as kernels, DeliverLayout, RecordColumns, RecordRows, SelectKeys, SilentBlock,
    SilentReset, Spent, StepGrads, StepInputs, SurrogateFn,
};

/// The arrays that the kernels return.
type I64Array<'py> = Bound<'py, PyArray1<i64>>;
type F32Array<'py> = Bound<'py, PyArray1<f32>>;
type F32Array2<'py> = Bound<'py, PyArray2<f32>>;

/// The values of a C-contiguous array named `field`.
fn view<'a, T: Element, D: Dimension>(
    a: &'a PyReadonlyArray<'_, T, D>,
    field: &str,
) -> PyResult<&'a [T]> {
    a.as_slice().map_err(contiguous(field))
}

/// The values of a C-contiguous writable array named `field`.
fn view_mut<'a, T: Element, D: Dimension>(
    a: &'a mut PyReadwriteArray<'_, T, D>,
    field: &str,
) -> PyResult<&'a mut [T]> {
    a.as_slice_mut().map_err(contiguous(field))
}

/// Backward pass of one delivery through a weight table (`crate::train_kernels::deliver_backward`).
///
/// `g_cur [n, N]`, `table [R, width]` and `grad [G, S]` are C-contiguous float32;
/// `rows`, `local` int64 and `mult` float32 `[E]`. Adds `mult[s] * g_cur[rows[s],
/// g_col0:g_col0+width]` to `grad[grad_row0 + local[s], grad_col0:grad_col0+width]`
/// in place and returns `g_mult [E]` with `g_mult[s] = <table[local[s]], g_cur[rows[s],
/// g_col0:g_col0+width]>`, with the interpreter released.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(super) fn deliver_backward<'py>(
    py: Python<'py>,
    g_cur: PyReadonlyArray2<'py, f32>,
    g_col0: usize,
    rows: PyReadonlyArray1<'py, i64>,
    local: PyReadonlyArray1<'py, i64>,
    mult: PyReadonlyArray1<'py, f32>,
    table: PyReadonlyArray2<'py, f32>,
    mut grad: PyReadwriteArray2<'py, f32>,
    grad_row0: usize,
    grad_col0: usize,
) -> PyResult<F32Array<'py>> {
    let lay = DeliverLayout {
        g_stride: g_cur.shape()[1],
        g_col0,
        width: table.shape()[1],
        grad_stride: grad.shape()[1],
        grad_row0,
        grad_col0,
    };
    let (g, r) = (view(&g_cur, "g_cur")?, view(&rows, "rows")?);
    let (l, m) = (view(&local, "local")?, view(&mult, "mult")?);
    let (t, d) = (view(&table, "table")?, view_mut(&mut grad, "grad")?);
    kernels::check_deliver(&lay, g.len(), r, l, m.len(), t.len(), d.len())?;
    let mut out = vec![0.0f32; r.len()];
    py.detach(|| kernels::deliver_backward(&lay, g, r, l, m, t, d, &mut out));
    Ok(PyArray1::from_vec(py, out))
}

/// Integrate, fire, reset and enqueue (`crate::train_kernels::step_forward`).
///
/// `v`, `cur`, `live`, `q` are C-contiguous float32 `[rows, N]`, `theta` `[N]`;
/// `v_out`, `q_out`, `s_out` and `live_out` (`[rows, N]`) receive `V'`, `Q'`, `s`
/// and `live'`, `u_out` (optional) `U`; the momentum keys `vpre` (optional, `[rows,
/// N]`) of the neurons that fire are set to `U` in place. Returns `(positions int64,
/// U there, theta there, all U finite)`.
#[pyfunction]
#[pyo3(signature = (v, cur, live, q, theta, v_out, q_out, s_out, live_out, u_out=None, vpre=None))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(super) fn step_forward<'py>(
    py: Python<'py>,
    v: PyReadonlyArray2<'py, f32>,
    cur: PyReadonlyArray2<'py, f32>,
    live: PyReadonlyArray2<'py, f32>,
    q: PyReadonlyArray2<'py, f32>,
    theta: PyReadonlyArray1<'py, f32>,
    mut v_out: PyReadwriteArray2<'py, f32>,
    mut q_out: PyReadwriteArray2<'py, f32>,
    mut s_out: PyReadwriteArray2<'py, f32>,
    mut live_out: PyReadwriteArray2<'py, f32>,
    mut u_out: Option<PyReadwriteArray2<'py, f32>>,
    mut vpre: Option<PyReadwriteArray2<'py, f32>>,
) -> PyResult<(I64Array<'py>, F32Array<'py>, F32Array<'py>, bool)> {
    let theta = view(&theta, "theta")?;
    let inputs = StepInputs {
        v: view(&v, "v")?,
        cur: view(&cur, "cur")?,
        live: view(&live, "live")?,
        q: view(&q, "q")?,
        theta,
    };
    let outputs = kernels::StepOutputs {
        v: view_mut(&mut v_out, "v_out")?,
        q: view_mut(&mut q_out, "q_out")?,
        s: view_mut(&mut s_out, "s_out")?,
        live: view_mut(&mut live_out, "live_out")?,
        u: u_out.as_mut().map(|a| view_mut(a, "u_out")).transpose()?,
    };
    let vp = vpre.as_mut().map(|a| view_mut(a, "vpre")).transpose()?;
    inputs.check(v.shape()[1], &outputs, vp.as_deref())?;
    let (fired, finite) = py.detach(|| kernels::step_forward(inputs, outputs, vp));
    let (pos, u) = (fired.pos.into_pyarray(py), fired.u.into_pyarray(py));
    Ok((pos, u, fired.theta.into_pyarray(py), finite))
}

/// Take the selected entries out of `q` and deliver them (`crate::train_kernels::deliver_forward`).
///
/// `q` `[rows, N]` float32 (modified in place), `flat`, `rows`, `local` int64 `[E]`,
/// `table` `[R, width]` float32, all C-contiguous. Returns `(cur [rows, N], mult [E])`.
#[pyfunction]
pub(super) fn deliver_forward<'py>(
    py: Python<'py>,
    mut q: PyReadwriteArray2<'py, f32>,
    flat: PyReadonlyArray1<'py, i64>,
    rows: PyReadonlyArray1<'py, i64>,
    local: PyReadonlyArray1<'py, i64>,
    table: PyReadonlyArray2<'py, f32>,
    col0: usize,
) -> PyResult<(F32Array2<'py>, F32Array<'py>)> {
    let (n_rows, n_neu) = (q.shape()[0], q.shape()[1]);
    let lay = DeliverLayout::forward(n_neu, col0, table.shape()[1]);
    let (f, r, l) = (
        view(&flat, "flat")?,
        view(&rows, "rows")?,
        view(&local, "local")?,
    );
    let t = view(&table, "table")?;
    let qs = view_mut(&mut q, "q")?;
    kernels::check_deliver_forward(&lay, qs.len(), f, r, l, t.len())?;
    let mut cur = vec![0.0f32; n_rows * n_neu];
    let mut mult = vec![0.0f32; f.len()];
    py.detach(|| kernels::deliver_forward(&lay, qs, f, r, l, t, &mut cur, &mut mult));
    let cur = PyArray1::from_vec(py, cur).reshape([n_rows, n_neu])?;
    Ok((cur, PyArray1::from_vec(py, mult)))
}

/// Adds the spikes `fired` to the pending keys `pend` (`crate::train_kernels::merge_pending`).
///
/// `pend`, `fired`: sorted int64 keys `row * N + neuron` in `[0, n_rows * N)`;
/// `is_source`: bool `[N]`. Returns `(keys, counts [n_rows], first [n_rows])`.
#[pyfunction]
pub(super) fn merge_pending<'py>(
    py: Python<'py>,
    pend: PyReadonlyArray1<'py, i64>,
    fired: PyReadonlyArray1<'py, i64>,
    is_source: PyReadonlyArray1<'py, bool>,
    n_rows: usize,
) -> PyResult<(I64Array<'py>, I64Array<'py>, I64Array<'py>)> {
    let (p, f) = (view(&pend, "pend")?, view(&fired, "fired")?);
    let src = view(&is_source, "is_source")?;
    kernels::check_merge(p, f, n_rows, src.len())?;
    let out = py.detach(|| kernels::merge_pending(p, f, src, n_rows));
    let array = |v| PyArray1::from_vec(py, v);
    Ok((array(out.keys), array(out.counts), array(out.first)))
}

/// The group of every row (`crate::train_kernels::select_pending`).
///
/// `pend`: sorted int64 keys `row * n_neu + neuron`, `counts` `[rows]` of them per
/// row; `scheduler` is `"fifo"` (with `seq` int64 `[rows, n_neu]`), `"random"` (with
/// `state` int64 `[rows]`) or `"momentum"` (with `vpre` float32 `[rows, n_neu]`, and
/// `state` when `jitter > 0`). Returns `(rows, neurons, flat, offsets, left)`.
#[pyfunction]
#[pyo3(signature = (pend, counts, f, n_neu, scheduler, seq=None, state=None, vpre=None, jitter=0.0))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(super) fn select_pending<'py>(
    py: Python<'py>,
    pend: PyReadonlyArray1<'py, i64>,
    counts: PyReadonlyArray1<'py, i64>,
    f: usize,
    n_neu: usize,
    scheduler: &str,
    seq: Option<PyReadonlyArray2<'py, i64>>,
    state: Option<PyReadonlyArray1<'py, i64>>,
    vpre: Option<PyReadonlyArray2<'py, f32>>,
    jitter: f32,
) -> PyResult<(
    I64Array<'py>,
    I64Array<'py>,
    I64Array<'py>,
    I64Array<'py>,
    I64Array<'py>,
)> {
    let (p, c) = (view(&pend, "pend")?, view(&counts, "counts")?);
    kernels::check_pending(p, c, f, n_neu)?;
    let seq = seq.as_ref().map(|a| view(a, "seq")).transpose()?;
    let state = state.as_ref().map(|a| view(a, "state")).transpose()?;
    let vpre = vpre.as_ref().map(|a| view(a, "vpre")).transpose()?;
    let keys = SelectKeys::new(scheduler, seq, state, vpre, jitter, c.len(), n_neu)?;
    let sel = py.detach(|| kernels::select_pending(p, c, f, n_neu, keys));
    let array = |v| PyArray1::from_vec(py, v);
    let (rows, neurons, flat) = (array(sel.rows), array(sel.neurons), array(sel.flat));
    Ok((rows, neurons, flat, array(sel.offsets), array(sel.left)))
}

/// Backward of a step that kept the surrogate terms of its spikes only
/// (`crate::train_kernels::step_backward`).
///
/// `g_v`, `g_q`, `live`: C-contiguous float32 `[rows, N]`; `fired` int64 flat
/// positions, `u_f` and `d_f` (the surrogate derivative there) float32 `[F]`. Returns
/// `(gU, gI)`, each `[rows, N]`.
#[pyfunction]
pub(super) fn step_backward<'py>(
    py: Python<'py>,
    g_v: PyReadonlyArray2<'py, f32>,
    g_q: PyReadonlyArray2<'py, f32>,
    live: PyReadonlyArray2<'py, f32>,
    fired: PyReadonlyArray1<'py, i64>,
    u_f: PyReadonlyArray1<'py, f32>,
    d_f: PyReadonlyArray1<'py, f32>,
) -> PyResult<(F32Array2<'py>, F32Array2<'py>)> {
    let grads = StepGrads {
        g_v: view(&g_v, "g_v")?,
        g_q: view(&g_q, "g_q")?,
        live: view(&live, "live")?,
        fired: view(&fired, "fired")?,
        u_f: view(&u_f, "u_f")?,
        d_f: view(&d_f, "d_f")?,
    };
    grads.check()?;
    let (n_rows, n_neu) = (g_v.shape()[0], g_v.shape()[1]);
    let (g_u, g_cur) = py.detach(|| kernels::step_backward(&grads));
    let g_u = PyArray1::from_vec(py, g_u).reshape([n_rows, n_neu])?;
    let g_cur = PyArray1::from_vec(py, g_cur).reshape([n_rows, n_neu])?;
    Ok((g_u, g_cur))
}

/// The latency and decision records of a step's output spikes
/// (`crate::train_kernels::record_outputs`).
///
/// `counters`: C-contiguous float64 `[rows, C]`, written in place; `columns`: `(synops
/// start, synops end, latency, decision, running, totals)` of `CounterColumns`;
/// `latency_open` float32 `[rows]` (in place), `done` bool `[rows]`; `fired` the step's
/// spikes as sorted int64 positions `row * N + neuron`; the spikes so far as `live`
/// (refractory mask) or `spikes` (per-neuron counts), exactly one of them, and
/// `delivered`, float32 `[rows, N]`; `fanout` float64 `[N]`; `labels` int64 `[rows]`.
/// Returns whether a running row may still record a latency.
#[pyfunction]
#[pyo3(signature = (
    counters, columns, latency_open, done, fired, out_offset, delivered, fanout, k, latency,
    live=None, spikes=None, labels=None,
))]
#[allow(clippy::too_many_arguments)]
pub(super) fn record_outputs<'py>(
    py: Python<'py>,
    mut counters: PyReadwriteArray2<'py, f64>,
    columns: (usize, usize, usize, usize, usize, usize),
    mut latency_open: PyReadwriteArray1<'py, f32>,
    done: PyReadonlyArray1<'py, bool>,
    fired: PyReadonlyArray1<'py, i64>,
    out_offset: usize,
    delivered: PyReadonlyArray2<'py, f32>,
    fanout: PyReadonlyArray1<'py, f64>,
    k: usize,
    latency: bool,
    live: Option<PyReadonlyArray2<'py, f32>>,
    spikes: Option<PyReadonlyArray2<'py, f32>>,
    labels: Option<PyReadonlyArray1<'py, i64>>,
) -> PyResult<bool> {
    let (synops_start, synops_end, lat, decision, running, totals) = columns;
    let cols = RecordColumns {
        width: counters.shape()[1],
        synops: synops_start..synops_end,
        latency: lat,
        decision,
        running,
        totals,
    };
    let spent = match (&live, &spikes) {
        (Some(a), None) => Spent::Live(view(a, "live")?),
        (None, Some(a)) => Spent::Fired(view(a, "spikes")?),
        _ => {
            let err =
                crate::EngineError::parameter("live", "both or neither", "pass live or spikes");
            return Err(err.into());
        }
    };
    let rows = RecordRows {
        n_neu: delivered.shape()[1],
        out_offset,
        spent,
        delivered: view(&delivered, "delivered")?,
        fanout: view(&fanout, "fanout")?,
        labels: labels.as_ref().map(|a| view(a, "labels")).transpose()?,
        done: view(&done, "done")?,
    };
    let (cnt, fired) = (view_mut(&mut counters, "counters")?, view(&fired, "fired")?);
    let open = view_mut(&mut latency_open, "latency_open")?;
    kernels::check_records(cnt.len(), &cols, &rows, open.len(), fired)?;
    Ok(py.detach(|| kernels::record_outputs(cnt, &cols, &rows, open, fired, k, latency)))
}

/// The backward pass of one population's silent spikes, in place
/// (`crate::train_kernels::silent_grad`).
///
/// `g` (written), `v`, `live`: C-contiguous float32 `[rows, N]`; `theta` `[width]` (the
/// population's thresholds); `g_c`
/// float32 `[emitting rows, width]`: the gradient of each silent spike through its
/// targets; the population is the columns `col0..col0 + width`; `rows` int64 the
/// emitting rows (`None`: all). `surrogate` is `"atan"` (`p = pi alpha / 2`, `q = scale
/// alpha / 2`) or `"fast_sigmoid"` (`p = slope`, `q = scale`); `reset` `"zero"`,
/// `"subtract"` or `"keep"`.
#[pyfunction]
#[pyo3(signature = (g, v, live, theta, g_c, col0, surrogate, p, q, reset, rows=None))]
#[allow(clippy::too_many_arguments)]
pub(super) fn silent_grad(
    py: Python<'_>,
    mut g: PyReadwriteArray2<'_, f32>,
    v: PyReadonlyArray2<'_, f32>,
    live: PyReadonlyArray2<'_, f32>,
    theta: PyReadonlyArray1<'_, f32>,
    g_c: PyReadonlyArray2<'_, f32>,
    col0: usize,
    surrogate: &str,
    p: f32,
    q: f32,
    reset: &str,
    rows: Option<PyReadonlyArray1<'_, i64>>,
) -> PyResult<()> {
    let sur = SurrogateFn::from_name(surrogate, p, q)?;
    let reset = match reset {
        "zero" => SilentReset::Zero,
        "subtract" => SilentReset::Subtract,
        "keep" => SilentReset::Keep,
        other => {
            let reason = "must be 'zero', 'subtract' or 'keep'";
            return Err(crate::EngineError::parameter("reset", other, reason).into());
        }
    };
    let block = SilentBlock {
        stride: g.shape()[1],
        col0,
        width: g_c.shape()[1],
        rows: rows.as_ref().map(|a| view(a, "rows")).transpose()?,
        surrogate: sur,
        reset,
    };
    let (v, live) = (view(&v, "v")?, view(&live, "live")?);
    let (theta, g_c) = (view(&theta, "theta")?, view(&g_c, "g_c")?);
    let g = view_mut(&mut g, "g")?;
    kernels::check_silent(g.len(), v.len(), live.len(), theta.len(), g_c.len(), &block)?;
    py.detach(|| kernels::silent_grad(g, v, live, theta, g_c, &block));
    Ok(())
}
