//! Binding of the torch engine's CPU kernels (`crate::train_kernels`): numpy views of
//! the torch tensors in, checked, the kernels run with the interpreter released.

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::{param_err, to_pyerr};
use crate::train_kernels::{
    check_deliver, check_keys, deliver_backward as deliver_backward_kernel,
    deliver_forward as deliver_forward_kernel, merge_pending as merge_pending_kernel,
    select_pending as select_pending_kernel, step_backward as step_backward_kernel,
    step_forward as step_forward_kernel, DeliverLayout, SelectKeys, StepOutputs,
};

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
    let contiguous = |field: &str| {
        to_pyerr(
            py,
            param_err(field, "non-contiguous", "must be C-contiguous"),
        )
    };
    let lay = DeliverLayout {
        g_stride: g_cur.shape()[1],
        g_col0,
        width: table.shape()[1],
        grad_stride: grad.shape()[1],
        grad_row0,
        grad_col0,
    };
    let g = g_cur.as_slice().map_err(|_| contiguous("g_cur"))?;
    let r = rows.as_slice().map_err(|_| contiguous("rows"))?;
    let l = local.as_slice().map_err(|_| contiguous("local"))?;
    let m = mult.as_slice().map_err(|_| contiguous("mult"))?;
    let t = table.as_slice().map_err(|_| contiguous("table"))?;
    let d = grad.as_slice_mut().map_err(|_| contiguous("grad"))?;
    check_deliver(&lay, g.len(), r, l, m.len(), t.len(), d.len())
        .map_err(|(field, value, reason)| to_pyerr(py, param_err(field, value, reason)))?;
    let mut out = vec![0.0f32; r.len()];
    py.detach(|| deliver_backward_kernel(&lay, g, r, l, m, t, d, &mut out));
    Ok(PyArray1::from_vec(py, out))
}

fn same_len(py: Python<'_>, field: &str, len: usize, expected: usize) -> PyResult<()> {
    if len == expected {
        Ok(())
    } else {
        Err(to_pyerr(
            py,
            param_err(field, len, "must have as many elements as v"),
        ))
    }
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
    u_out: Option<PyReadwriteArray2<'py, f32>>,
    vpre: Option<PyReadwriteArray2<'py, f32>>,
) -> PyResult<(
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray1<f32>>,
    bool,
)> {
    let contiguous = |field: &str| {
        to_pyerr(
            py,
            param_err(field, "non-contiguous", "must be C-contiguous"),
        )
    };
    let th = theta.as_slice().map_err(|_| contiguous("theta"))?;
    if v.shape()[1] != th.len() {
        return Err(to_pyerr(
            py,
            param_err("theta", th.len(), "must have one value per column of v"),
        ));
    }
    let vs = v.as_slice().map_err(|_| contiguous("v"))?;
    let n = vs.len();
    let c = cur.as_slice().map_err(|_| contiguous("cur"))?;
    let l = live.as_slice().map_err(|_| contiguous("live"))?;
    let qq = q.as_slice().map_err(|_| contiguous("q"))?;
    same_len(py, "cur", c.len(), n)?;
    same_len(py, "live", l.len(), n)?;
    same_len(py, "q", qq.len(), n)?;
    let vo = v_out.as_slice_mut().map_err(|_| contiguous("v_out"))?;
    let qo = q_out.as_slice_mut().map_err(|_| contiguous("q_out"))?;
    let so = s_out.as_slice_mut().map_err(|_| contiguous("s_out"))?;
    let lo = live_out
        .as_slice_mut()
        .map_err(|_| contiguous("live_out"))?;
    same_len(py, "v_out", vo.len(), n)?;
    same_len(py, "q_out", qo.len(), n)?;
    same_len(py, "s_out", so.len(), n)?;
    same_len(py, "live_out", lo.len(), n)?;
    let mut u_out = u_out;
    let uo = match u_out.as_mut() {
        Some(a) => {
            let sl = a.as_slice_mut().map_err(|_| contiguous("u_out"))?;
            same_len(py, "u_out", sl.len(), n)?;
            Some(sl)
        }
        None => None,
    };
    let mut vpre = vpre;
    let vp = match vpre.as_mut() {
        Some(a) => {
            let sl = a.as_slice_mut().map_err(|_| contiguous("vpre"))?;
            same_len(py, "vpre", sl.len(), n)?;
            Some(sl)
        }
        None => None,
    };
    let outputs = StepOutputs {
        v: vo,
        q: qo,
        s: so,
        u: uo,
        live: lo,
    };
    let (fired, finite) = py.detach(|| step_forward_kernel(vs, c, l, qq, th, outputs, vp));
    Ok((
        PyArray1::from_vec(py, fired.pos),
        PyArray1::from_vec(py, fired.u),
        PyArray1::from_vec(py, fired.theta),
        finite,
    ))
}

/// Currents `[rows, N]` and multiplicities `[E]` of a delivery.
type Delivered<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray1<f32>>);

/// Two `[rows, N]` arrays.
type Delivered2<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<f32>>);

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
    let contiguous = |field: &str| {
        to_pyerr(
            py,
            param_err(field, "non-contiguous", "must be C-contiguous"),
        )
    };
    let (n_rows, n_neu) = (q.shape()[0], q.shape()[1]);
    let lay = DeliverLayout {
        g_stride: n_neu,
        g_col0: col0,
        width: table.shape()[1],
        grad_stride: table.shape()[1],
        grad_row0: 0,
        grad_col0: 0,
    };
    let f = flat.as_slice().map_err(|_| contiguous("flat"))?;
    let r = rows.as_slice().map_err(|_| contiguous("rows"))?;
    let l = local.as_slice().map_err(|_| contiguous("local"))?;
    let t = table.as_slice().map_err(|_| contiguous("table"))?;
    let qs = q.as_slice_mut().map_err(|_| contiguous("q"))?;
    check_deliver(&lay, qs.len(), r, l, f.len(), t.len(), t.len())
        .map_err(|(field, value, reason)| to_pyerr(py, param_err(field, value, reason)))?;
    if let Some(bad) = f.iter().find(|&&x| x < 0 || x as usize >= qs.len()) {
        return Err(to_pyerr(
            py,
            param_err("flat", bad, "position out of range"),
        ));
    }
    let mut cur = vec![0.0f32; n_rows * n_neu];
    let mut mult = vec![0.0f32; f.len()];
    py.detach(|| deliver_forward_kernel(&lay, qs, f, r, l, t, &mut cur, &mut mult));
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
    let contiguous = |field: &str| {
        to_pyerr(
            py,
            param_err(field, "non-contiguous", "must be C-contiguous"),
        )
    };
    let p = pend.as_slice().map_err(|_| contiguous("pend"))?;
    let f = fired.as_slice().map_err(|_| contiguous("fired"))?;
    let src = is_source.as_slice().map_err(|_| contiguous("is_source"))?;
    for (name, keys) in [("pend", p), ("fired", f)] {
        check_keys(keys, n_rows, src.len())
            .map_err(|bad| to_pyerr(py, param_err(name, bad, "key out of range")))?;
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(to_pyerr(
                py,
                param_err(name, "unsorted", "keys must be sorted and distinct"),
            ));
        }
    }
    let out = py.detach(|| merge_pending_kernel(p, f, src, n_rows));
    Ok((
        PyArray1::from_vec(py, out.keys),
        PyArray1::from_vec(py, out.counts),
        PyArray1::from_vec(py, out.first),
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
    let bad =
        |field: &str, value: String, reason: &str| to_pyerr(py, param_err(field, value, reason));
    let contiguous = |field: &str| bad(field, "non-contiguous".into(), "must be C-contiguous");
    let p = pend.as_slice().map_err(|_| contiguous("pend"))?;
    let c = counts.as_slice().map_err(|_| contiguous("counts"))?;
    let n_rows = c.len();
    if f == 0 {
        return Err(bad("f", f.to_string(), "must be >= 1"));
    }
    if c.iter().any(|&x| x < 0) || c.iter().sum::<i64>() != p.len() as i64 {
        return Err(bad(
            "counts",
            format!("{c:?}"),
            "must be >= 0 and sum to len(pend)",
        ));
    }
    check_keys(p, n_rows, n_neu).map_err(|k| bad("pend", k.to_string(), "key out of range"))?;
    // Each row's entries must be its own keys, sorted and distinct.
    let mut start = 0usize;
    for (r, &n) in c.iter().enumerate() {
        let row = &p[start..start + n as usize];
        start += n as usize;
        let (lo, hi) = ((r * n_neu) as i64, ((r + 1) * n_neu) as i64);
        if row.iter().any(|&k| k < lo || k >= hi) || row.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad(
                "pend",
                format!("row {r}"),
                "keys must be sorted, distinct and in their row",
            ));
        }
    }
    let grid = n_rows * n_neu;
    let sized = |field: &str, len: usize, want: usize| {
        if len == want {
            Ok(())
        } else {
            Err(bad(
                field,
                len.to_string(),
                "has the wrong number of elements",
            ))
        }
    };
    let seq_s = seq
        .as_ref()
        .map(|a| a.as_slice())
        .transpose()
        .map_err(|_| contiguous("seq"))?;
    let state_s = state
        .as_ref()
        .map(|a| a.as_slice())
        .transpose()
        .map_err(|_| contiguous("state"))?;
    let vpre_s = vpre
        .as_ref()
        .map(|a| a.as_slice())
        .transpose()
        .map_err(|_| contiguous("vpre"))?;
    let keys = match (scheduler, seq_s, state_s, vpre_s) {
        ("fifo", Some(s), _, _) => {
            sized("seq", s.len(), grid)?;
            SelectKeys::Fifo { seq: s }
        }
        ("random", _, Some(s), _) => {
            sized("state", s.len(), n_rows)?;
            SelectKeys::Random { state: s }
        }
        ("momentum", _, st, Some(v)) => {
            sized("vpre", v.len(), grid)?;
            if let Some(s) = st {
                sized("state", s.len(), n_rows)?;
            } else if jitter > 0.0 {
                return Err(bad(
                    "state",
                    "None".into(),
                    "momentum with jitter > 0 needs the hash states",
                ));
            }
            SelectKeys::Momentum {
                vpre: v,
                state: st,
                jitter,
            }
        }
        _ => {
            return Err(bad(
                "scheduler",
                scheduler.to_string(),
                "must be fifo (with seq), random (with state) or momentum (with vpre)",
            ))
        }
    };
    let sel = py.detach(|| select_pending_kernel(p, c, f, n_neu, keys));
    Ok((
        PyArray1::from_vec(py, sel.rows),
        PyArray1::from_vec(py, sel.neurons),
        PyArray1::from_vec(py, sel.flat),
        PyArray1::from_vec(py, sel.offsets),
        PyArray1::from_vec(py, sel.left),
    ))
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
) -> PyResult<Delivered2<'py>> {
    let contiguous = |field: &str| {
        to_pyerr(
            py,
            param_err(field, "non-contiguous", "must be C-contiguous"),
        )
    };
    let (n_rows, n_neu) = (g_v.shape()[0], g_v.shape()[1]);
    let gv = g_v.as_slice().map_err(|_| contiguous("g_v"))?;
    let gq = g_q.as_slice().map_err(|_| contiguous("g_q"))?;
    let l = live.as_slice().map_err(|_| contiguous("live"))?;
    same_len(py, "g_q", gq.len(), gv.len())?;
    same_len(py, "live", l.len(), gv.len())?;
    let f = fired.as_slice().map_err(|_| contiguous("fired"))?;
    let u = u_f.as_slice().map_err(|_| contiguous("u_f"))?;
    let d = d_f.as_slice().map_err(|_| contiguous("d_f"))?;
    if u.len() != f.len() || d.len() != f.len() {
        return Err(to_pyerr(
            py,
            param_err(
                "u_f",
                u.len(),
                "fired, u_f and d_f must have the same length",
            ),
        ));
    }
    check_keys(f, n_rows, n_neu)
        .map_err(|bad| to_pyerr(py, param_err("fired", bad, "position out of range")))?;
    let mut g_u = vec![0.0f32; gv.len()];
    let mut g_cur = vec![0.0f32; gv.len()];
    py.detach(|| step_backward_kernel(gv, gq, l, f, u, d, &mut g_u, &mut g_cur));
    let g_u = PyArray1::from_vec(py, g_u).reshape([n_rows, n_neu])?;
    let g_cur = PyArray1::from_vec(py, g_cur).reshape([n_rows, n_neu])?;
    Ok((g_u, g_cur))
}
