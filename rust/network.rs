//! Network description ([`NetworkSpec`]) and its validated, preprocessed form
//! ([`Network`]) (R1.*).
//!
//! Population indices follow the semantics: population `0` is the input, populations
//! `1..=P` are the LIF populations `spec.populations[0..P]`. Error locations use these
//! indices ("population 1" is `spec.populations[0]`) and the 0-based index of a
//! projection in `spec.projections` ("projection 0 (dense)").
//!
//! Preprocessing lays weights out by *source* neuron so that delivering a spike
//! (R4.2, R4.3.4) touches contiguous memory:
//! - dense weights are transposed to `[n_source][n_target]`, so one delivery is one
//!   contiguous axpy into the target population's current buffer;
//! - conv kernels are re-laid out as `[c_in][kh][kw][c_out]`, and the fan-out of a
//!   source neuron is computed from the geometry through per-axis tap tables (no dense
//!   expansion of the kernel);
//! - pooling uses the same per-axis tap tables and one scalar weight.
//!
//! The engine stores the state of a population whose conv/pool projections agree on an
//! output plane (`h * w`) channel-last: the neuron with id `lo + o * plane + pix`
//! (channel `o`, pixel `pix`, R1.5 ids are channel-major) is kept in *slot*
//! `lo + pix * channels + o`. One kernel tap of a conv delivery is then one contiguous
//! row addition of `c_out` floats. Slots are internal: every id the engine exposes,
//! orders or hashes is the R1.5 id (the table `id_of` converts);
//! other populations have slot = id. The storage order changes no float operation.

use crate::alloc;
use crate::error::EngineError;

/// Kind of a pooling projection (R1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// `AvgPool2d`: weight `1/(kh*kw)` computed in float32.
    Avg,
    /// `SumPool2d`: weight `1`.
    Sum,
}

/// Kind and weights of a projection (R1.2).
#[derive(Debug, Clone, PartialEq)]
pub enum ProjectionKind {
    /// weight: row-major [n_target, n_source] (as numpy W[q, j]).
    Dense {
        /// Row-major `[n_target, n_source]`.
        weight: Vec<f32>,
    },
    /// weight: row-major [c_out, c_in, kh, kw]. Source read as (c_in, in_h, in_w).
    Conv2d {
        /// Row-major `[c_out, c_in, kh, kw]`.
        weight: Vec<f32>,
        /// Input channels.
        c_in: usize,
        /// Input height.
        in_h: usize,
        /// Input width.
        in_w: usize,
        /// Output channels.
        c_out: usize,
        /// Kernel height.
        kh: usize,
        /// Kernel width.
        kw: usize,
        /// Stride `(sh, sw)`.
        stride: (usize, usize),
        /// Zero padding `(ph, pw)`.
        padding: (usize, usize),
    },
    /// Source read as (channels, in_h, in_w); no padding.
    Pool {
        /// Average or sum pooling.
        kind: PoolKind,
        /// Channels (source and target).
        channels: usize,
        /// Input height.
        in_h: usize,
        /// Input width.
        in_w: usize,
        /// Kernel height.
        kh: usize,
        /// Kernel width.
        kw: usize,
        /// Stride `(sh, sw)`.
        stride: (usize, usize),
    },
}

impl ProjectionKind {
    /// Short name used in error locations: "dense", "conv2d", "avgpool2d", "sumpool2d".
    pub fn name(&self) -> &'static str {
        match self {
            ProjectionKind::Dense { .. } => "dense",
            ProjectionKind::Conv2d { .. } => "conv2d",
            ProjectionKind::Pool {
                kind: PoolKind::Avg,
                ..
            } => "avgpool2d",
            ProjectionKind::Pool {
                kind: PoolKind::Sum,
                ..
            } => "sumpool2d",
        }
    }
}

/// A projection from population `source` to population `target` (R1.2).
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionSpec {
    /// Source population index (0 = input).
    pub source: usize,
    /// Target population index (`> source`).
    pub target: usize,
    /// Kind and weights.
    pub kind: ProjectionKind,
}

/// A LIF population (R1.1, R1.4).
#[derive(Debug, Clone, PartialEq)]
pub struct PopulationSpec {
    /// Number of neurons (flat, C order of the population's shape).
    pub size: usize,
    /// Threshold θ, len 1 (broadcast) or `size`; finite and > 0.
    pub threshold: Vec<f32>,
    /// Leak factor β, len 1 (broadcast) or `size`; in [0, 1].
    pub beta: Vec<f32>,
    /// The network's refractory dropout p in [0, 1) (R4.6); used only when the caller
    /// passes it in [`crate::RunConfig::refractory_dropout`].
    pub refractory_dropout: f64,
}

/// Description of a whole network (R1.*).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSpec {
    /// Number of input neurons (population 0).
    pub input_size: usize,
    /// Non-input populations 1..=P, in order.
    pub populations: Vec<PopulationSpec>,
    /// Projections, in projection order (R7.4 `synops_per_projection`).
    pub projections: Vec<ProjectionSpec>,
}

/// Per-axis tap table of a conv/pool projection: for source coordinate `y`, the entries
/// `offsets[y]..offsets[y+1]` of `out` / `tap` are the output coordinates `i` and kernel
/// indices `ky` with `ky = y + pad - i*stride` in `[0, kernel)` (R1.2).
#[derive(Debug, Clone)]
pub(crate) struct Taps {
    pub offsets: Vec<usize>,
    pub out: Vec<usize>,
    pub tap: Vec<usize>,
    /// `out` and `tap` times the strides of the target slots and of the re-laid kernel
    /// along this axis (set by [`Taps::scale`]), so that a delivery adds offsets.
    pub out_s: Vec<usize>,
    pub tap_s: Vec<usize>,
}

impl Taps {
    /// The taps of an axis of `n_in` source positions and `n_out` target positions.
    /// Counted first, so that the tables are allocated once and fallibly (a kernel and
    /// padding of tens of thousands make billions of taps: an error, not an abort).
    fn new(
        n_in: usize,
        n_out: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        location: &str,
    ) -> Result<Taps, EngineError> {
        // i <= yp / stride and i*stride > yp - kernel, with yp = y + pad.
        let span = |y: usize| {
            let yp = y + pad;
            let i_hi = (yp / stride).min(n_out.saturating_sub(1));
            let i_lo = if yp + 1 > kernel {
                (yp + 1 - kernel).div_ceil(stride)
            } else {
                0
            };
            (yp, i_lo, i_hi)
        };
        let total = (0..n_in)
            .map(|y| match span(y) {
                (_, lo, hi) if n_out > 0 && lo <= hi => (hi - lo + 1) as u128,
                _ => 0,
            })
            .sum::<u128>();
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        let mut offsets = alloc::with_capacity(n_in + 1, location, "conv/pool tap offsets")?;
        let mut out = alloc::with_capacity(total, location, "conv/pool taps")?;
        let mut tap = alloc::with_capacity(total, location, "conv/pool taps")?;
        offsets.push(0);
        for y in 0..n_in {
            let (yp, i_lo, i_hi) = span(y);
            if n_out > 0 && i_lo <= i_hi {
                for i in i_lo..=i_hi {
                    out.push(i);
                    tap.push(yp - i * stride); // ky in [0, kernel)
                }
            }
            offsets.push(out.len());
        }
        Ok(Taps {
            offsets,
            out,
            tap,
            out_s: Vec::new(),
            tap_s: Vec::new(),
        })
    }

    /// Sets `out_s = out * out_mul` and `tap_s = tap * tap_mul`.
    fn scale(&mut self, out_mul: usize, tap_mul: usize, location: &str) -> Result<(), EngineError> {
        let n = self.out.len();
        self.out_s = alloc::with_capacity(n, location, "conv/pool taps")?;
        self.tap_s = alloc::with_capacity(n, location, "conv/pool taps")?;
        self.out_s.extend(self.out.iter().map(|&i| i * out_mul));
        self.tap_s.extend(self.tap.iter().map(|&k| k * tap_mul));
        Ok(())
    }

    #[inline(always)]
    pub fn range(&self, y: usize) -> std::ops::Range<usize> {
        self.offsets[y]..self.offsets[y + 1]
    }

    #[inline(always)]
    pub fn count(&self, y: usize) -> usize {
        self.offsets[y + 1] - self.offsets[y]
    }
}

/// `(c, y, x)` of source neuron `local` of a conv/pool projection (source read as
/// `(channels, in_h, in_w)`, R1.2).
#[inline(always)]
pub(crate) fn source_coords(in_hw: usize, in_w: usize, local: usize) -> (usize, usize, usize) {
    let (c, rem) = (local / in_hw, local % in_hw);
    (c, rem / in_w, rem % in_w)
}

/// Preprocessed projection kind.
#[derive(Debug, Clone)]
pub(crate) enum ProjKind {
    /// `wt[j * n_target + q] = W[q, j]`.
    Dense { wt: Vec<f32> },
    /// `k[((c*kh + ky)*kw + kx)*c_out + o] = K[o, c, ky, kx]`.
    Conv {
        k: Vec<f32>,
        c_out: usize,
        kh: usize,
        kw: usize,
        in_hw: usize,
        in_w: usize,
        plane: usize,
        ow: usize,
        rows: Taps,
        cols: Taps,
        /// The target is stored channel-last with this projection's plane (see the
        /// module documentation); otherwise its slots are its ids.
        channel_last: bool,
    },
    Pool {
        weight: f32,
        in_hw: usize,
        in_w: usize,
        plane: usize,
        ow: usize,
        rows: Taps,
        cols: Taps,
        /// As for `Conv`.
        channel_last: bool,
    },
}

/// Preprocessed projection.
#[derive(Debug, Clone)]
pub(crate) struct Projection {
    /// Global id of the first neuron of the target population (R1.5).
    pub target_offset: usize,
    /// Size of the target population.
    pub target_size: usize,
    /// Non-input index (0-based, = population index - 1) of the target population.
    pub target_pop: usize,
    pub kind: ProjKind,
}

impl Projection {
    /// Fan-out (R1.3) of source neuron `local` in this projection.
    #[inline]
    pub fn fan_out(&self, local: usize) -> u64 {
        match &self.kind {
            ProjKind::Dense { .. } => self.target_size as u64,
            ProjKind::Conv {
                c_out,
                in_hw,
                in_w,
                rows,
                cols,
                ..
            } => {
                let (_, y, x) = source_coords(*in_hw, *in_w, local);
                (*c_out * rows.count(y) * cols.count(x)) as u64
            }
            ProjKind::Pool {
                in_hw,
                in_w,
                rows,
                cols,
                ..
            } => {
                let (_, y, x) = source_coords(*in_hw, *in_w, local);
                (rows.count(y) * cols.count(x)) as u64
            }
        }
    }
}

/// Validated, preprocessed network (weights laid out by source neuron for fast fan-out).
///
/// Built by [`Network::new`], which checks every rule of R1 and never panics on user
/// input. Immutable afterwards and shared by all threads of a batch.
#[derive(Debug, Clone)]
pub struct Network {
    spec: NetworkSpec,
    /// `pop_offset[p]`: global id of the first neuron of non-input population `p + 1`;
    /// `pop_offset[P] = n_neurons` (R1.5).
    pub(crate) pop_offset: Vec<usize>,
    /// Per neuron: its non-input population index (0-based).
    pub(crate) pop_of: Vec<u32>,
    /// Per slot threshold θ (R1.4), broadcast.
    pub(crate) threshold: Vec<f32>,
    /// Per slot leak β (R1.4), broadcast.
    pub(crate) beta: Vec<f32>,
    /// Per non-input population: channels of its storage layout (`size / plane`, with
    /// `plane` the one its conv/pool projections agree on; 1 otherwise).
    pub(crate) layout_channels: Vec<usize>,
    /// Storage slot -> neuron id (R1.5).
    pub(crate) id_of: Vec<u32>,
    pub(crate) projections: Vec<Projection>,
    /// `outgoing[s]`: indices of the projections whose source is population `s`
    /// (0 = input), in projection order.
    pub(crate) outgoing: Vec<Vec<usize>>,
    /// `distinct_targets[s]`: the projections from population `s` (0 = input) have
    /// distinct target populations, so a run of sources of `s` can be delivered one
    /// projection at a time without changing the order of the additions into any
    /// neuron (see `engine::deliver_run`).
    pub(crate) distinct_targets: Vec<bool>,
}

fn mul(a: usize, b: usize, location: &str, field: &str) -> Result<usize, EngineError> {
    a.checked_mul(b)
        .ok_or_else(|| EngineError::model(location, field, format!("{a} * {b}"), "too large"))
}

fn check_pos(v: usize, location: &str, field: &str) -> Result<(), EngineError> {
    if v == 0 {
        Err(EngineError::model(location, field, v, "must be >= 1"))
    } else {
        Ok(())
    }
}

fn check_weights(w: &[f32], location: &str) -> Result<(), EngineError> {
    if let Some((i, x)) = w.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(EngineError::model(
            location,
            format!("weight[{i}]"),
            x,
            "weights must be finite",
        ));
    }
    Ok(())
}

/// Output size of a conv/pool axis: `(n + 2 pad - k) // s + 1`, or an error.
fn out_size(
    n: usize,
    pad: usize,
    k: usize,
    s: usize,
    location: &str,
    field: &str,
) -> Result<usize, EngineError> {
    let padded = pad
        .checked_mul(2)
        .and_then(|p2| n.checked_add(p2))
        .ok_or_else(|| EngineError::model(location, field, n, "too large"))?;
    if padded < k {
        return Err(EngineError::model(
            location,
            field,
            format!("input {n} + 2*padding {pad} < kernel {k}"),
            "output size must be >= 1",
        ));
    }
    Ok((padded - k) / s + 1)
}

impl Network {
    /// Validates `spec` (R1.1-R1.5) and preprocesses it.
    ///
    /// Checks: input size and population sizes > 0; at least one non-input population;
    /// `threshold`/`beta` of length 1 or `size`, threshold finite and > 0, beta finite in
    /// [0, 1]; `refractory_dropout` finite in [0, 1); projections with
    /// `source < target <= P`, weights finite and of the right length, conv/pool geometry
    /// valid (kernel, stride >= 1, output size >= 1, source and target sizes equal to
    /// what the geometry reads and produces). The number of non-input neurons must fit
    /// the u32 neuron-id space ([`EngineError::Overflow`]).
    pub fn new(spec: NetworkSpec) -> Result<Network, EngineError> {
        let n_pops = spec.populations.len();
        if spec.input_size == 0 {
            return Err(EngineError::model(
                "population 0",
                "size",
                0,
                "the input population must have >= 1 neuron",
            ));
        }
        if spec.input_size > u32::MAX as usize {
            return Err(EngineError::overflow(
                "population 0",
                "input size (u32 index)",
            ));
        }
        if n_pops == 0 {
            return Err(EngineError::model(
                "network",
                "populations",
                "[]",
                "there must be at least one non-input population",
            ));
        }
        let mut pop_offset = Vec::with_capacity(n_pops + 1);
        let mut total: usize = 0;
        pop_offset.push(0);
        for (p, pop) in spec.populations.iter().enumerate() {
            let loc = format!("population {}", p + 1);
            check_pos(pop.size, &loc, "size")?;
            for (field, vals) in [("threshold", &pop.threshold), ("beta", &pop.beta)] {
                if vals.len() != 1 && vals.len() != pop.size {
                    return Err(EngineError::model(
                        &loc,
                        format!("{field} length"),
                        vals.len(),
                        format!("must be 1 or the population size {}", pop.size),
                    ));
                }
            }
            for (i, &th) in pop.threshold.iter().enumerate() {
                if !(th.is_finite() && th > 0.0) {
                    return Err(EngineError::model(
                        &loc,
                        format!("threshold[{i}]"),
                        th,
                        "must be finite and > 0",
                    ));
                }
            }
            for (i, &b) in pop.beta.iter().enumerate() {
                if !(b.is_finite() && (0.0..=1.0).contains(&b)) {
                    return Err(EngineError::model(
                        &loc,
                        format!("beta[{i}]"),
                        b,
                        "must be finite and in [0, 1]",
                    ));
                }
            }
            let p_drop = pop.refractory_dropout;
            if !(p_drop.is_finite() && (0.0..1.0).contains(&p_drop)) {
                return Err(EngineError::model(
                    &loc,
                    "refractory_dropout",
                    p_drop,
                    "must be finite and in [0, 1)",
                ));
            }
            total = total
                .checked_add(pop.size)
                .ok_or_else(|| EngineError::overflow("network", "neuron count"))?;
            pop_offset.push(total);
        }
        if total >= u32::MAX as usize {
            return Err(EngineError::overflow(
                "network",
                "neuron count (u32 neuron ids)",
            ));
        }
        let pop_size = |p: usize| -> usize {
            if p == 0 {
                spec.input_size
            } else {
                spec.populations[p - 1].size
            }
        };

        let mut projections = Vec::with_capacity(spec.projections.len());
        let mut outgoing = vec![Vec::new(); n_pops + 1];
        for (pi, proj) in spec.projections.iter().enumerate() {
            let loc = format!("projection {pi} ({})", proj.kind.name());
            if proj.target > n_pops || proj.target == 0 {
                return Err(EngineError::model(
                    &loc,
                    "target",
                    proj.target,
                    format!("must be a non-input population index in 1..={n_pops}"),
                ));
            }
            if proj.source >= proj.target {
                return Err(EngineError::model(
                    &loc,
                    "source",
                    proj.source,
                    format!("must be < target {} (R1.2)", proj.target),
                ));
            }
            let n_s = pop_size(proj.source);
            let n_d = pop_size(proj.target);
            let kind = match &proj.kind {
                ProjectionKind::Dense { weight } => {
                    let want = mul(n_d, n_s, &loc, "weight length")?;
                    if weight.len() != want {
                        return Err(EngineError::model(
                            &loc,
                            "weight length",
                            weight.len(),
                            format!("must be n_target * n_source = {n_d} * {n_s} = {want}"),
                        ));
                    }
                    check_weights(weight, &loc)?;
                    let mut wt = alloc::filled(want, 0.0f32, &loc, "dense weights")?;
                    for (q, row) in weight.chunks_exact(n_s).enumerate() {
                        for (j, &w) in row.iter().enumerate() {
                            wt[j * n_d + q] = w;
                        }
                    }
                    ProjKind::Dense { wt }
                }
                ProjectionKind::Conv2d {
                    weight,
                    c_in,
                    in_h,
                    in_w,
                    c_out,
                    kh,
                    kw,
                    stride,
                    padding,
                } => {
                    let (c_in, in_h, in_w, c_out, kh, kw) = (*c_in, *in_h, *in_w, *c_out, *kh, *kw);
                    for (f, v) in [
                        ("c_in", c_in),
                        ("in_h", in_h),
                        ("in_w", in_w),
                        ("c_out", c_out),
                        ("kh", kh),
                        ("kw", kw),
                        ("stride[0]", stride.0),
                        ("stride[1]", stride.1),
                    ] {
                        check_pos(v, &loc, f)?;
                    }
                    let in_hw = mul(in_h, in_w, &loc, "in_h * in_w")?;
                    let src = mul(c_in, in_hw, &loc, "c_in * in_h * in_w")?;
                    if src != n_s {
                        return Err(EngineError::model(
                            &loc,
                            "c_in * in_h * in_w",
                            src,
                            format!("must equal the source population size {n_s}"),
                        ));
                    }
                    let oh = out_size(in_h, padding.0, kh, stride.0, &loc, "in_h")?;
                    let ow = out_size(in_w, padding.1, kw, stride.1, &loc, "in_w")?;
                    let plane = mul(oh, ow, &loc, "oh * ow")?;
                    let produced = mul(c_out, plane, &loc, "c_out * oh * ow")?;
                    if produced != n_d {
                        return Err(EngineError::model(
                            &loc,
                            "c_out * oh * ow",
                            format!("{c_out} * {oh} * {ow} = {produced}"),
                            format!("must equal the target population size {n_d}"),
                        ));
                    }
                    let khw = mul(kh, kw, &loc, "kh * kw")?;
                    let want = mul(
                        mul(c_out, c_in, &loc, "c_out * c_in")?,
                        khw,
                        &loc,
                        "weight length",
                    )?;
                    if weight.len() != want {
                        return Err(EngineError::model(
                            &loc,
                            "weight length",
                            weight.len(),
                            format!("must be c_out*c_in*kh*kw = {want}"),
                        ));
                    }
                    check_weights(weight, &loc)?;
                    let mut k = alloc::filled(want, 0.0f32, &loc, "conv kernel")?;
                    for o in 0..c_out {
                        for c in 0..c_in {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    k[((c * kh + ky) * kw + kx) * c_out + o] =
                                        weight[((o * c_in + c) * kh + ky) * kw + kx];
                                }
                            }
                        }
                    }
                    ProjKind::Conv {
                        k,
                        c_out,
                        kh,
                        kw,
                        in_hw,
                        in_w,
                        plane,
                        ow,
                        rows: Taps::new(in_h, oh, kh, stride.0, padding.0, &loc)?,
                        cols: Taps::new(in_w, ow, kw, stride.1, padding.1, &loc)?,
                        channel_last: false, // set below, once all projections are known
                    }
                }
                ProjectionKind::Pool {
                    kind,
                    channels,
                    in_h,
                    in_w,
                    kh,
                    kw,
                    stride,
                } => {
                    let (channels, in_h, in_w, kh, kw) = (*channels, *in_h, *in_w, *kh, *kw);
                    for (f, v) in [
                        ("channels", channels),
                        ("in_h", in_h),
                        ("in_w", in_w),
                        ("kh", kh),
                        ("kw", kw),
                        ("stride[0]", stride.0),
                        ("stride[1]", stride.1),
                    ] {
                        check_pos(v, &loc, f)?;
                    }
                    let in_hw = mul(in_h, in_w, &loc, "in_h * in_w")?;
                    let src = mul(channels, in_hw, &loc, "channels * in_h * in_w")?;
                    if src != n_s {
                        return Err(EngineError::model(
                            &loc,
                            "channels * in_h * in_w",
                            src,
                            format!("must equal the source population size {n_s}"),
                        ));
                    }
                    let oh = out_size(in_h, 0, kh, stride.0, &loc, "in_h")?;
                    let ow = out_size(in_w, 0, kw, stride.1, &loc, "in_w")?;
                    let plane = mul(oh, ow, &loc, "oh * ow")?;
                    let produced = mul(channels, plane, &loc, "channels * oh * ow")?;
                    if produced != n_d {
                        return Err(EngineError::model(
                            &loc,
                            "channels * oh * ow",
                            format!("{channels} * {oh} * {ow} = {produced}"),
                            format!("must equal the target population size {n_d}"),
                        ));
                    }
                    let khw = mul(kh, kw, &loc, "kh * kw")?;
                    let weight = match kind {
                        PoolKind::Avg => 1.0f32 / (khw as f32),
                        PoolKind::Sum => 1.0f32,
                    };
                    ProjKind::Pool {
                        weight,
                        in_hw,
                        in_w,
                        plane,
                        ow,
                        rows: Taps::new(in_h, oh, kh, stride.0, 0, &loc)?,
                        cols: Taps::new(in_w, ow, kw, stride.1, 0, &loc)?,
                        channel_last: false, // set below
                    }
                }
            };
            outgoing[proj.source].push(pi);
            projections.push(Projection {
                target_offset: pop_offset[proj.target - 1],
                target_size: n_d,
                target_pop: proj.target - 1,
                kind,
            });
        }
        // R1.1: the last population is the output; source < target makes it a sink.
        debug_assert!(outgoing[n_pops].is_empty());

        // Storage layout (module documentation): the plane that all conv/pool
        // projections into a population agree on; otherwise (or if none) one "pixel"
        // per neuron, and slot = id.
        let layout_plane: Vec<usize> = (0..n_pops)
            .map(|p| {
                let size = pop_offset[p + 1] - pop_offset[p];
                let mut planes = projections
                    .iter()
                    .filter(|pr| pr.target_pop == p)
                    .filter_map(|pr| match &pr.kind {
                        ProjKind::Conv { plane, .. } | ProjKind::Pool { plane, .. } => Some(*plane),
                        ProjKind::Dense { .. } => None,
                    });
                match planes.next() {
                    Some(first) if planes.all(|x| x == first) => first,
                    _ => size.max(1),
                }
            })
            .collect();
        let layout_channels: Vec<usize> = (0..n_pops)
            .map(|p| (pop_offset[p + 1] - pop_offset[p]) / layout_plane[p])
            .collect();

        let mut pop_of: Vec<u32> = Vec::new();
        let mut threshold: Vec<f32> = Vec::new();
        let mut beta: Vec<f32> = Vec::new();
        let mut id_of: Vec<u32> = vec![];
        // Fallible allocation: a huge population size is an error, not an abort.
        let what = "per-neuron arrays";
        alloc::reserve(&mut pop_of, total, "network", what)?;
        alloc::reserve(&mut id_of, total, "network", what)?;
        id_of.resize(total, 0);
        alloc::reserve(&mut threshold, total, "network", what)?;
        alloc::reserve(&mut beta, total, "network", what)?;
        for (p, pop) in spec.populations.iter().enumerate() {
            let (lo, plane, channels) = (pop_offset[p], layout_plane[p], layout_channels[p]);
            pop_of.extend(std::iter::repeat_n(p as u32, pop.size));
            for l in 0..pop.size {
                let slot = lo + (l % plane) * channels + l / plane;
                id_of[slot] = (lo + l) as u32;
            }
            for (dst, src) in [(&mut threshold, &pop.threshold), (&mut beta, &pop.beta)] {
                if src.len() == 1 {
                    dst.extend(std::iter::repeat_n(src[0], pop.size));
                } else {
                    dst.extend(
                        id_of[lo..lo + pop.size]
                            .iter()
                            .map(|&q| src[q as usize - lo]),
                    );
                }
            }
        }
        for proj in &mut projections {
            let p = proj.target_pop;
            match &mut proj.kind {
                ProjKind::Conv {
                    plane,
                    channel_last,
                    c_out,
                    kw,
                    ow,
                    rows,
                    cols,
                    ..
                } => {
                    *channel_last = *plane == layout_plane[p];
                    // Slot of pixel (i, j) of channel 0: (i * ow + j) * c_out if
                    // channel-last, else i * ow + j; kernel tap (ky, kx) of input channel
                    // c at (c * kh + ky) * kw + kx) * c_out.
                    let pix_stride = if *channel_last { *c_out } else { 1 };
                    rows.scale(*ow * pix_stride, *kw * *c_out, "network")?;
                    cols.scale(pix_stride, *c_out, "network")?;
                }
                ProjKind::Pool {
                    plane,
                    channel_last,
                    ow,
                    rows,
                    cols,
                    ..
                } => {
                    *channel_last = *plane == layout_plane[p];
                    let pix_stride = if *channel_last { layout_channels[p] } else { 1 };
                    rows.scale(*ow * pix_stride, 0, "network")?;
                    cols.scale(pix_stride, 0, "network")?;
                }
                ProjKind::Dense { wt } if layout_channels[p] > 1 => {
                    // Each row (one source neuron) in slot order.
                    let (lo, n) = (proj.target_offset, proj.target_size);
                    let mut row = alloc::filled(n, 0.0f32, "network", "dense weights")?;
                    for r in wt.chunks_exact_mut(n) {
                        for (dst, &id) in row.iter_mut().zip(&id_of[lo..lo + n]) {
                            *dst = r[id as usize - lo];
                        }
                        r.copy_from_slice(&row);
                    }
                }
                ProjKind::Dense { .. } => {}
            }
        }
        let distinct_targets = outgoing
            .iter()
            .map(|o| {
                let mut t: Vec<usize> = o.iter().map(|&pi| projections[pi].target_pop).collect();
                t.sort_unstable();
                t.windows(2).all(|w| w[0] != w[1])
            })
            .collect();
        Ok(Network {
            distinct_targets,
            spec,
            pop_offset,
            pop_of,
            threshold,
            beta,
            layout_channels,
            id_of,
            projections,
            outgoing,
        })
    }

    /// The validated description this network was built from.
    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }

    /// Number of input neurons (population 0).
    pub fn input_size(&self) -> usize {
        self.spec.input_size
    }

    /// Number of non-input neurons (R1.5 neuron ids are `0..n_neurons()`).
    pub fn n_neurons(&self) -> usize {
        self.pop_offset[self.pop_offset.len() - 1]
    }

    /// Number of non-input populations `P`.
    pub fn n_populations(&self) -> usize {
        self.spec.populations.len()
    }

    /// Number of output neurons (size of the last population, R1.1).
    pub fn n_outputs(&self) -> usize {
        self.spec.populations[self.spec.populations.len() - 1].size
    }

    /// Number of projections.
    pub fn n_projections(&self) -> usize {
        self.spec.projections.len()
    }

    /// Global id (R1.5) of the first neuron of population `population` (1..=P).
    /// Returns `None` for the input population or an out-of-range index.
    pub fn population_offset(&self, population: usize) -> Option<usize> {
        if population == 0 || population > self.n_populations() {
            None
        } else {
            Some(self.pop_offset[population - 1])
        }
    }

    /// Fan-out (R1.3) of neuron `local_index` of population `population` (0 = input)
    /// in each projection whose source is that population, in projection order.
    /// Returns an empty vector for an out-of-range population or index.
    pub fn fan_out(&self, population: usize, local_index: usize) -> Vec<u64> {
        let size = if population == 0 {
            self.spec.input_size
        } else if population <= self.n_populations() {
            self.spec.populations[population - 1].size
        } else {
            return Vec::new();
        };
        if local_index >= size {
            return Vec::new();
        }
        self.outgoing[population]
            .iter()
            .map(|&pi| self.projections[pi].fan_out(local_index))
            .collect()
    }

    /// Synapses (R1.3) of source neuron `local_index` of population `population` in
    /// projection `projection`, as `(global target id, weight)` pairs, in no particular
    /// order. Returns an empty vector if the projection does not start at that neuron's
    /// population or an index is out of range. Slow; meant for tests and tools.
    pub fn synapses(&self, projection: usize, local_index: usize) -> Vec<(usize, f32)> {
        let Some(spec) = self.spec.projections.get(projection) else {
            return Vec::new();
        };
        let n_s = if spec.source == 0 {
            self.spec.input_size
        } else {
            self.spec.populations[spec.source - 1].size
        };
        if local_index >= n_s {
            return Vec::new();
        }
        let mut out = Vec::new();
        let proj = &self.projections[projection];
        let base = proj.target_offset;
        match &proj.kind {
            ProjKind::Dense { wt } => {
                // Rows are in slot order.
                let n_d = proj.target_size;
                for q in 0..n_d {
                    out.push((self.id_of[base + q] as usize, wt[local_index * n_d + q]));
                }
            }
            ProjKind::Conv {
                k,
                c_out,
                kh,
                kw,
                in_hw,
                in_w,
                plane,
                ow,
                rows,
                cols,
                ..
            } => {
                let (c, y, x) = source_coords(*in_hw, *in_w, local_index);
                for r in rows.range(y) {
                    for s in cols.range(x) {
                        let kb = ((c * kh + rows.tap[r]) * kw + cols.tap[s]) * c_out;
                        for o in 0..*c_out {
                            out.push((
                                base + o * plane + rows.out[r] * ow + cols.out[s],
                                k[kb + o],
                            ));
                        }
                    }
                }
            }
            ProjKind::Pool {
                weight,
                in_hw,
                in_w,
                plane,
                ow,
                rows,
                cols,
                ..
            } => {
                let (c, y, x) = source_coords(*in_hw, *in_w, local_index);
                for r in rows.range(y) {
                    for s in cols.range(x) {
                        out.push((base + c * plane + rows.out[r] * ow + cols.out[s], *weight));
                    }
                }
            }
        }
        out
    }
}
