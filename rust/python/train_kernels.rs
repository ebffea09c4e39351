//! Binding of the torch engine's CPU kernels (`crate::train_kernels`): numpy views of
//! the torch tensors in, checked, the kernels run with the interpreter released.

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::errors::{contiguous, param_err};
use crate::scheduler::Scheduler;
use crate::train_kernels::{self as kernels, DeliverLayout, LayoutError, SelectKeys};

/// A `(field, value, reason)` error of the kernels' checks as a `ParameterError`.
fn layout_err((field, value, reason): LayoutError) -> PyErr {
    param_err(field, value, reason).into()
}

/// `len == expected` (the element count of `v`), or an error naming `field`.
fn same_len(field: &str, len: usize, expected: usize) -> PyResult<()> {
    if len == expected {
        return Ok(());
    }
    Err(param_err(field, len, "must have as many elements as v").into())
}

/// The slice of an array, checked to have `n` elements.
fn input<'a>(field: &str, a: &'a PyReadonlyArray2<'_, f32>, n: usize) -> PyResult<&'a [f32]> {
    let s = a.as_slice().map_err(contiguous(field))?;
    same_len(field, s.len(), n).map(|()| s)
}

/// The mutable slice of an array, checked to have `n` elements.
fn output<'a>(
    field: &str,
    a: &'a mut PyReadwriteArray2<'_, f32>,
    n: usize,
) -> PyResult<&'a mut [f32]> {
    let s = a.as_slice_mut().map_err(contiguous(field))?;
    same_len(field, s.len(), n).map(|()| s)
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
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let lay = DeliverLayout {
        g_stride: g_cur.shape()[1],
        g_col0,
        width: table.shape()[1],
        grad_stride: grad.shape()[1],
        grad_row0,
        grad_col0,
    };
    let g = g_cur.as_slice().map_err(contiguous("g_cur"))?;
    let r = rows.as_slice().map_err(contiguous("rows"))?;
    let l = local.as_slice().map_err(contiguous("local"))?;
    let m = mult.as_slice().map_err(contiguous("mult"))?;
    let t = table.as_slice().map_err(contiguous("table"))?;
    let d = grad.as_slice_mut().map_err(contiguous("grad"))?;
    kernels::check_deliver(&lay, g.len(), r, l, m.len(), t.len(), d.len()).map_err(layout_err)?;
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
) -> PyResult<(
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray1<f32>>,
    bool,
)> {
    let th = theta.as_slice().map_err(contiguous("theta"))?;
    if v.shape()[1] != th.len() {
        let reason = "must have one value per column of v";
        return Err(param_err("theta", th.len(), reason).into());
    }
    let vs = v.as_slice().map_err(contiguous("v"))?;
    let n = vs.len();
    let (c, l, qq) = (
        input("cur", &cur, n)?,
        input("live", &live, n)?,
        input("q", &q, n)?,
    );
    let outputs = kernels::StepOutputs {
        v: output("v_out", &mut v_out, n)?,
        q: output("q_out", &mut q_out, n)?,
        s: output("s_out", &mut s_out, n)?,
        live: output("live_out", &mut live_out, n)?,
        u: u_out.as_mut().map(|a| output("u_out", a, n)).transpose()?,
    };
    let vp = vpre.as_mut().map(|a| output("vpre", a, n)).transpose()?;
    let (fired, finite) = py.detach(|| kernels::step_forward(vs, c, l, qq, th, outputs, vp));
    Ok((
        PyArray1::from_vec(py, fired.pos),
        PyArray1::from_vec(py, fired.u),
        PyArray1::from_vec(py, fired.theta),
        finite,
    ))
}

/// Currents `[rows, N]` and multiplicities `[E]` of a delivery.
type Delivered<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray1<f32>>);

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
) -> PyResult<Delivered<'py>> {
    let (n_rows, n_neu, width) = (q.shape()[0], q.shape()[1], table.shape()[1]);
    let lay = DeliverLayout {
        g_stride: n_neu,
        g_col0: col0,
        width,
        grad_stride: width,
        grad_row0: 0,
        grad_col0: 0,
    };
    let f = flat.as_slice().map_err(contiguous("flat"))?;
    let r = rows.as_slice().map_err(contiguous("rows"))?;
    let l = local.as_slice().map_err(contiguous("local"))?;
    let t = table.as_slice().map_err(contiguous("table"))?;
    let qs = q.as_slice_mut().map_err(contiguous("q"))?;
    kernels::check_deliver(&lay, qs.len(), r, l, f.len(), t.len(), t.len()).map_err(layout_err)?;
    if let Some(bad) = f.iter().find(|&&x| x < 0 || x as usize >= qs.len()) {
        return Err(param_err("flat", bad, "position out of range").into());
    }
    let mut cur = vec![0.0f32; n_rows * n_neu];
    let mut mult = vec![0.0f32; f.len()];
    py.detach(|| kernels::deliver_forward(&lay, qs, f, r, l, t, &mut cur, &mut mult));
    let cur = PyArray1::from_vec(py, cur).reshape([n_rows, n_neu])?;
    Ok((cur, PyArray1::from_vec(py, mult)))
}

/// Pending keys, counts and first neurons of every row (`crate::train_kernels::Pending`).
type PendingArrays<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
);

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
) -> PyResult<PendingArrays<'py>> {
    let p = pend.as_slice().map_err(contiguous("pend"))?;
    let f = fired.as_slice().map_err(contiguous("fired"))?;
    let src = is_source.as_slice().map_err(contiguous("is_source"))?;
    for (name, keys) in [("pend", p), ("fired", f)] {
        kernels::check_keys(keys, n_rows, src.len())
            .map_err(|bad| param_err(name, bad, "key out of range"))?;
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            let reason = "keys must be sorted and distinct";
            return Err(param_err(name, "unsorted", reason).into());
        }
    }
    let out = py.detach(|| kernels::merge_pending(p, f, src, n_rows));
    let (keys, counts, first) = (out.keys, out.counts, out.first);
    Ok((
        PyArray1::from_vec(py, keys),
        PyArray1::from_vec(py, counts),
        PyArray1::from_vec(py, first),
    ))
}

/// Selected rows, neurons, keys, row offsets and the keys left (`crate::train_kernels::Selection`).
type SelectionArrays<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
);

/// The group of every row (`crate::train_kernels::select_pending`).
///
/// `pend`: sorted int64 keys `row * n_neu + neuron`, `counts` `[rows]` of them per
/// row; `scheduler` is `"fifo"` (with `seq` int64 `[rows, n_neu]`), `"random"` (with
/// `state` int64 `[rows]`) or `"momentum"` (with `vpre` float32 `[rows, n_neu]`, and
/// `state` when `jitter > 0`). Returns `(rows, neurons, flat, offsets, left)`.
#[pyfunction]
#[pyo3(signature = (pend, counts, f, n_neu, scheduler, seq=None, state=None, vpre=None, jitter=0.0))]
#[allow(clippy::too_many_arguments)]
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
) -> PyResult<SelectionArrays<'py>> {
    let p = pend.as_slice().map_err(contiguous("pend"))?;
    let c = counts.as_slice().map_err(contiguous("counts"))?;
    kernels::check_pending(p, c, f, n_neu).map_err(layout_err)?;
    let (n_rows, grid) = (c.len(), c.len() * n_neu);
    let seq = (seq.as_ref().map(|a| a.as_slice()).transpose()).map_err(contiguous("seq"))?;
    let state = (state.as_ref().map(|a| a.as_slice()).transpose()).map_err(contiguous("state"))?;
    let vpre = (vpre.as_ref().map(|a| a.as_slice()).transpose()).map_err(contiguous("vpre"))?;
    let sized = |field: &str, len: usize, want: usize| match len == want {
        true => Ok(()),
        false => Err(param_err(field, len, "has the wrong number of elements")),
    };
    let keys = match (scheduler.parse::<Scheduler>().ok(), seq, state, vpre) {
        (Some(Scheduler::Fifo), Some(seq), _, _) => {
            sized("seq", seq.len(), grid)?;
            SelectKeys::Fifo { seq }
        }
        (Some(Scheduler::Random), _, Some(state), _) => {
            sized("state", state.len(), n_rows)?;
            SelectKeys::Random { state }
        }
        (Some(Scheduler::Momentum { .. }), _, state, Some(vpre)) => {
            sized("vpre", vpre.len(), grid)?;
            match state {
                Some(s) => sized("state", s.len(), n_rows)?,
                None if jitter > 0.0 => {
                    let reason = "momentum with jitter > 0 needs the hash states";
                    return Err(param_err("state", "None", reason).into());
                }
                None => {}
            }
            SelectKeys::Momentum {
                vpre,
                state,
                jitter,
            }
        }
        _ => {
            let reason = "must be fifo (with seq), random (with state) or momentum (with vpre)";
            return Err(param_err("scheduler", scheduler, reason).into());
        }
    };
    let sel = py.detach(|| kernels::select_pending(p, c, f, n_neu, keys));
    Ok((
        PyArray1::from_vec(py, sel.rows),
        PyArray1::from_vec(py, sel.neurons),
        PyArray1::from_vec(py, sel.flat),
        PyArray1::from_vec(py, sel.offsets),
        PyArray1::from_vec(py, sel.left),
    ))
}

/// Two `[rows, N]` arrays.
type Delivered2<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<f32>>);

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
) -> PyResult<Delivered2<'py>> {
    let (n_rows, n_neu) = (g_v.shape()[0], g_v.shape()[1]);
    let gv = g_v.as_slice().map_err(contiguous("g_v"))?;
    let (gq, l) = (
        input("g_q", &g_q, gv.len())?,
        input("live", &live, gv.len())?,
    );
    let f = fired.as_slice().map_err(contiguous("fired"))?;
    let u = u_f.as_slice().map_err(contiguous("u_f"))?;
    let d = d_f.as_slice().map_err(contiguous("d_f"))?;
    if u.len() != f.len() || d.len() != f.len() {
        let reason = "fired, u_f and d_f must have the same length";
        return Err(param_err("u_f", u.len(), reason).into());
    }
    kernels::check_keys(f, n_rows, n_neu)
        .map_err(|bad| param_err("fired", bad, "position out of range"))?;
    let mut g_u = vec![0.0f32; gv.len()];
    let mut g_cur = vec![0.0f32; gv.len()];
    py.detach(|| kernels::step_backward(gv, gq, l, f, u, d, &mut g_u, &mut g_cur));
    let g_u = PyArray1::from_vec(py, g_u).reshape([n_rows, n_neu])?;
    let g_cur = PyArray1::from_vec(py, g_cur).reshape([n_rows, n_neu])?;
    Ok((g_u, g_cur))
}
