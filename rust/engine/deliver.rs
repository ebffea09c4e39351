//! Deliveries (R4.2, R4.3.4): `I[q] += s * w` for every synapse of a run of sources,
//! through each projection kind (dense rows, conv kernel taps, pool windows), with the
//! synops of R7.4 and the touch bookkeeping of the integrate pass; under `layered`,
//! the carried deliveries of recurrent projections (R4.9).
//!
//! A run is the input events of a timestep ([`InputEvents`]) or the members of a
//! forward group that belong to one population ([`Members`]); each goes through each
//! outgoing projection in one call ([`deliver_run`]), which matches the projection's
//! kind and loads its tables once per run. Where two projections of the population
//! reach the same population, the run is delivered source by source instead, so that
//! the float sum into every neuron keeps the order of R4.2/R4.3.4.

use super::add;
use super::workspace::{Deferred, Touch, DEFERRED};
use crate::error::{EngineError, Location};
use crate::kernels::{add_row, add_rows, add_short, prefetch};
use crate::network::{pixel_taps, source_pixel, Network, ProjKind, Projection};

/// The dense weight row of source neuron `local` of projection `proj`.
#[inline(always)]
pub(super) fn dense_row(proj: &Projection, local: usize) -> &[f32] {
    match &proj.kind {
        ProjKind::Dense { wt } => {
            let n = proj.target_size;
            &wt[local * n..(local + 1) * n]
        }
        _ => &[],
    }
}

/// The sources of a delivery run: `(local index in the source population, scale s)`
/// for `e` in `0..len()`. The scale is the input value x of R4.2 or the multiplicity m
/// of R4.3.4. (A trait, not a closure: the event loop is compiled a second time with
/// AVX2 and everything it calls must be inlined into it.)
pub(super) trait Sources: Sized {
    fn len(&self) -> usize;
    fn get(&self, e: usize) -> (usize, f32);
    /// The sources `a..b`.
    fn part(&self, a: usize, b: usize) -> Self;
}

/// Input events of one timestep: input neuron `index[e]` with value `value[e]` (the
/// non-zero values of a dense frame, or a sparse input's events at that timestep).
pub(super) struct InputEvents<'a> {
    pub(super) index: &'a [u32],
    pub(super) value: &'a [f32],
}

impl Sources for InputEvents<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.index.len()
    }
    #[inline(always)]
    fn get(&self, e: usize) -> (usize, f32) {
        (self.index[e] as usize, self.value[e])
    }
    #[inline(always)]
    fn part(&self, a: usize, b: usize) -> Self {
        InputEvents {
            index: &self.index[a..b],
            value: &self.value[a..b],
        }
    }
}

/// Members `(neuron id, multiplicity)` of a forward group, all of the population whose
/// first id is `offset`.
pub(super) struct Members<'a> {
    pub(super) run: &'a [(u32, u32)],
    pub(super) offset: usize,
}

impl Sources for Members<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.run.len()
    }
    #[inline(always)]
    fn get(&self, e: usize) -> (usize, f32) {
        let (j, m) = self.run[e];
        (j as usize - self.offset, m as f32)
    }
    #[inline(always)]
    fn part(&self, a: usize, b: usize) -> Self {
        Members {
            run: &self.run[a..b],
            offset: self.offset,
        }
    }
}

/// Delivers the sources `src` of population `s` (0 = input) through all its outgoing
/// projections, counting the synops of each (R7.4); returns their sum. One projection
/// at a time over the whole run where that keeps the order of the additions into every
/// neuron (R4.3.4 delivers source by source): the projections of `s` reach distinct
/// populations; otherwise source by source.
///
/// With `CARRY` (scheduler `layered` in a network with recurrent projections), a
/// recurrent projection's current goes to the carried currents `carry` instead of
/// `cur`, and touches nothing (R4.9): its target neither integrates nor settles in
/// this step. Without, the recurrence code is compiled out. `MULTI`: several dense rows
/// of a population are kept and summed in one pass (`Touch::deferred`; networks whose
/// projections are all dense, `Network::all_dense`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn deliver_sources<S: Sources, const CARRY: bool, const MULTI: bool>(
    net: &Network,
    s: usize,
    src: &S,
    cur: &mut [f32],
    carry: &mut [f32],
    touch: &mut Touch,
    synops_per_projection: &mut [i64],
    loc: &Location,
) -> Result<u64, EngineError> {
    let outs = &net.outgoing[s];
    let n = src.len();
    let chunk = if outs.len() <= 1 || net.distinct_targets[s] {
        n.max(1)
    } else {
        1
    };
    let mut total = 0u64;
    let mut a = 0;
    while a < n {
        let b = (a + chunk).min(n);
        let part = src.part(a, b);
        for &pi in outs {
            let fo = if CARRY && net.projections[pi].recurrent {
                deliver_run::<S, true, MULTI>(net, pi, &part, carry, touch)
            } else {
                deliver_run::<S, false, MULTI>(net, pi, &part, cur, touch)
            };
            add(&mut synops_per_projection[pi], fo, loc, "synops")?;
            total = total.saturating_add(fo);
        }
        a = b;
    }
    Ok(total)
}

/// Adds the dense rows kept for population `p` (`Touch::deferred`, target slots
/// `base..base + n`), if any, before another delivery adds to the same currents: a
/// dense row that finds the list full, or a conv or pool delivery, so that every neuron
/// still sums its terms in the order of the group (R4.3.4). Without `MULTI` at most one
/// row is kept.
#[inline(always)]
fn flush_deferred<const MULTI: bool>(
    net: &Network,
    touch: &mut Touch,
    cur: &mut [f32],
    p: usize,
    base: usize,
    n: usize,
) {
    let d = &mut touch.deferred[p];
    let kept = std::mem::take(&mut d.len);
    let cur = &mut cur[base..base + n];
    if MULTI {
        let mut rows = [(&[][..], 0.0f32); DEFERRED];
        add_rows(cur, kept_rows(net, &d.rows[..kept], &mut rows));
    } else if kept > 0 {
        let r = d.rows[0];
        add_row(cur, dense_row(&net.projections[r.proj], r.local), r.s);
    }
}

/// The weight rows and scales `(w, s)` of the kept rows `kept`, written to `out`.
#[inline(always)]
pub(super) fn kept_rows<'a, 'n>(
    net: &'n Network,
    kept: &[Deferred],
    out: &'a mut [(&'n [f32], f32); DEFERRED],
) -> &'a [(&'n [f32], f32)] {
    for (o, d) in out.iter_mut().zip(kept) {
        *o = (dense_row(&net.projections[d.proj], d.local), d.s);
    }
    &out[..kept.len()]
}

/// Delivers the sources `src` (in order) through projection `pi`: `I[q] += s * w` for
/// every synapse of each. Returns the summed fan-out (R1.3, R7.4), saturating. The kind
/// of the projection is matched once per run, not once per source.
///
/// A dense row is kept in `touch.deferred` for the integrate pass (when the population
/// already keeps as many as it may, they are added now, in one pass); the rows of the
/// sources `AHEAD` places later are prefetched.
///
/// With `CARRIED`, `cur` is the carried currents `C` (R4.9): every row is added at
/// once and nothing is touched (the target is integrated at its next settle).
#[inline(always)]
fn deliver_run<S: Sources, const CARRIED: bool, const MULTI: bool>(
    net: &Network,
    pi: usize,
    src: &S,
    cur: &mut [f32],
    touch: &mut Touch,
) -> u64 {
    let proj = &net.projections[pi];
    let p = proj.target_pop;
    let base = proj.target_offset;
    let len = src.len();
    if !CARRIED {
        touch.pop(p);
    }
    match &proj.kind {
        ProjKind::Dense { wt } if CARRIED => {
            let n = proj.target_size;
            for e in 0..len {
                let (local, s) = src.get(e);
                add_row(&mut cur[base..base + n], &wt[local * n..(local + 1) * n], s);
            }
            (n as u64).saturating_mul(len as u64)
        }
        ProjKind::Dense { wt } => {
            let n = proj.target_size;
            touch.pop_full[p] = true;
            // The rows of the first sources now, then each one `AHEAD` deliveries ahead.
            for e in 0..AHEAD.min(len) {
                let a = src.get(e).0;
                prefetch(&wt[a * n..(a + 1) * n]);
            }
            for e in 0..len {
                if e + AHEAD < len {
                    let a = src.get(e + AHEAD).0;
                    prefetch(&wt[a * n..(a + 1) * n]);
                }
                let (local, s) = src.get(e);
                let row = Deferred { proj: pi, local, s };
                if MULTI {
                    if touch.deferred[p].len == DEFERRED {
                        flush_deferred::<true>(net, touch, cur, p, base, n);
                    }
                    let d = &mut touch.deferred[p];
                    if let Some(slot) = d.rows.get_mut(d.len) {
                        *slot = row;
                        d.len += 1;
                    }
                } else {
                    flush_deferred::<false>(net, touch, cur, p, base, n);
                    let d = &mut touch.deferred[p];
                    d.rows[0] = row;
                    d.len = 1;
                }
            }
            (n as u64).saturating_mul(len as u64)
        }
        ProjKind::Conv {
            k,
            c_out,
            kh,
            kw,
            plane,
            rows,
            cols,
            pixels,
            channel_last,
            in_hw,
            in_w,
            ..
        } => {
            let (c_out, plane) = (*c_out, *plane);
            let kc = kh * kw * c_out;
            if !CARRIED {
                flush_deferred::<MULTI>(net, touch, cur, p, base, proj.target_size);
            }
            let mut fan = 0u64;
            for e in 0..len {
                let (local, s) = src.get(e);
                // A pixel touch can make the population full within the run. (A
                // carried delivery touches nothing.)
                let full = CARRIED || touch.pop_full[p];
                let (c, pix) = source_pixel(*in_hw, local);
                let cb = c * kc;
                let (taps, n) = pixel_taps(rows, cols, pixels.as_ref(), *in_w, pix);
                for (out, tap) in taps {
                    let (q0, kb) = (base + out, cb + tap);
                    let ks = &k[kb..kb + c_out];
                    if *channel_last {
                        // The c_out channels of the pixel are contiguous slots.
                        add_short(&mut cur[q0..q0 + c_out], ks, s);
                        if !full {
                            touch.pixel(p, q0);
                        }
                    } else {
                        // slot = id, one "pixel" per neuron.
                        for (o, &w) in ks.iter().enumerate() {
                            let q = q0 + o * plane;
                            cur[q] += s * w;
                            if !full {
                                touch.pixel(p, q);
                            }
                        }
                    }
                }
                fan = fan.saturating_add((c_out * n) as u64);
            }
            fan
        }
        ProjKind::Pool {
            weight,
            plane,
            rows,
            cols,
            pixels,
            channel_last,
            in_hw,
            in_w,
            ..
        } => {
            if !CARRIED {
                flush_deferred::<MULTI>(net, touch, cur, p, base, proj.target_size);
            }
            let mut fan = 0u64;
            for e in 0..len {
                let (local, s) = src.get(e);
                let full = CARRIED || touch.pop_full[p];
                let sw = s * *weight;
                // Channel-last: pixel `pix` of channel `c` is slot `pix * channels + c`;
                // otherwise slot = id = `c * plane + pix` (`Taps::scale` holds the pixel
                // part).
                let (c, pix) = source_pixel(*in_hw, local);
                let ch_off = if *channel_last { c } else { c * *plane };
                let (taps, n) = pixel_taps(rows, cols, pixels.as_ref(), *in_w, pix);
                for (out, _) in taps {
                    let q = base + out + ch_off;
                    cur[q] += sw;
                    if !full {
                        // The pixel's channel-0 slot (the neuron itself if slot = id).
                        touch.pixel(p, if *channel_last { q - c } else { q });
                    }
                }
                fan = fan.saturating_add(n as u64);
            }
            fan
        }
    }
}

/// How many deliveries ahead the event loop prefetches weight rows.
const AHEAD: usize = 4;

/// The end-to-end checks of the delivery order live in `tests/engine_rules.rs`; this one
/// also reads the private `Network::distinct_targets`.
#[cfg(test)]
mod tests {
    use crate::network::{NetworkSpec, PopulationSpec, ProjKind, ProjectionKind, ProjectionSpec};
    use crate::{run_sample, Network, RunConfig, SampleInput, SampleResult, Scheduler, StopMode};

    fn pop(size: usize, th: f32, beta: f32) -> PopulationSpec {
        PopulationSpec {
            size,
            threshold: vec![th],
            beta: vec![beta],
            refractory_dropout: 0.0,
            bias: vec![0.0],
            reset: crate::network::ResetMode::Zero,
            alpha: vec![0.0],
        }
    }

    fn dense(source: usize, target: usize, weight: Vec<f32>) -> ProjectionSpec {
        ProjectionSpec {
            source,
            target,
            kind: ProjectionKind::Dense { weight },
        }
    }

    fn cfg(scheduler: Scheduler, f: usize) -> RunConfig {
        RunConfig {
            scheduler,
            forward_group_size: f,
            stop: StopMode::Drain,
            max_steps: None,
            seed: 0,
            refractory_dropout: None,
            input_dropout: 0.0,
            spike_dropout: 0.0,
            prioritize_input: true,
        }
    }

    fn net(input_size: usize, pops: Vec<PopulationSpec>, projs: Vec<ProjectionSpec>) -> Network {
        Network::new(NetworkSpec {
            input_size,
            populations: pops,
            projections: projs,
        })
        .expect("valid network")
    }

    fn run_dense(
        net: &Network,
        frames: &[f32],
        timesteps: usize,
        label: Option<usize>,
        config: &RunConfig,
    ) -> SampleResult {
        run_sample(
            net,
            &SampleInput::Dense { frames, timesteps },
            label,
            0,
            config,
        )
        .expect("run")
    }

    const ALL: [Scheduler; 5] = [
        Scheduler::Layered,
        Scheduler::Fifo,
        Scheduler::Random,
        Scheduler::Momentum { jitter: 0.0 },
        Scheduler::Momentum { jitter: 0.5 },
    ];

    /// Two projections from one population into one population: the group is delivered
    /// member by member (each member through its projections in projection order), as
    /// before the run-wise delivery, so the float sums are unchanged. The weights make
    /// the two possible orders round differently: with `a` the first projection's and
    /// `b` the second's weights from members 0 and 1, the summed current is
    /// `((a0 + b0) + a1) + b1` member by member but `((a0 + a1) + b0) + b1` projection
    /// by projection; `2^-30` is lost when added to 1 and kept when added to 0.
    #[test]
    fn shared_target_projections_keep_member_order() {
        let tiny = 2f32.powi(-30);
        // (a, b, whether the output fires member by member)
        let cases = [
            (vec![1.0, -1.0], vec![tiny, 0.0], false), // by projection: tiny, fires
            (vec![1.0, tiny], vec![-1.0, 0.0], true),  // by projection: 0, silent
        ];
        for (a, b, fires) in cases {
            let n = net(
                1,
                vec![pop(2, 1.0, 0.5), pop(1, tiny / 2.0, 0.5)],
                vec![dense(0, 1, vec![2.0, 2.0]), dense(1, 2, a), dense(1, 2, b)],
            );
            assert!(!n.distinct_targets[1]);
            for s in ALL {
                let r = run_dense(&n, &[1.0], 1, None, &cfg(s, 64));
                assert_eq!(r.spikes[0], 2, "{s:?}: both hidden neurons fire");
                assert_eq!(r.output_counts[0] > 0, fires, "{s:?} fires = {fires}");
            }
        }
    }

    /// The per-pixel tap tables (`PixelTaps`) change no spike and no counter: every
    /// scheduler gives the same results with them and with the per-axis walk that
    /// geometries past `PIXEL_TAPS_MAX` take, channel-last (one plane per target) and
    /// not (a target whose conv and pool projections have different planes).
    #[test]
    fn pixel_tap_tables_change_nothing() {
        let mut next = crate::rng::test_stream(0x0123_4567_89ab_cdef);
        let mut weights = |n: usize, lo: f32, hi: f32| -> Vec<f32> {
            (0..n)
                .map(|_| lo + (hi - lo) * ((next() >> 40) as f32 / (1u64 << 24) as f32))
                .collect()
        };
        // 3x3 kernels, stride 1, padding 1 on a 6x6 input; 2x2 average pools, stride 2.
        let conv = |source, target, (c_in, c_out): (usize, usize), weight| {
            let geo = [c_in, 6, 6, c_out, 3, 3, 1, 1, 1, 1];
            ProjectionSpec::from_flat(0, "conv2d", source, target, weight, &geo).expect("conv")
        };
        let avg_pool = |source, target, channels| {
            let geo = [channels, 6, 6, 2, 2, 2, 2];
            ProjectionSpec::from_flat(0, "avgpool2d", source, target, vec![], &geo).expect("pool")
        };
        let nets = [
            // 2x6x6 -> conv 4 -> 4x6x6 -> avg pool -> 4x3x3 -> 3.
            net(
                72,
                vec![pop(144, 1.0, 0.9), pop(36, 0.3, 0.9), pop(3, 0.5, 0.9)],
                vec![
                    conv(0, 1, (2, 4), weights(72, -0.2, 0.6)),
                    avg_pool(1, 2, 4),
                    dense(2, 3, weights(108, -0.2, 0.5)),
                ],
            ),
            // 1x6x6 -> conv 4 -> 4x6x6 -> avg pool -> 4x3x3, and 1x6x6 -> conv 1 -> the
            // same 36 neurons read as 1x6x6: two planes, so slot = id.
            net(
                36,
                vec![pop(144, 0.8, 0.9), pop(36, 0.3, 0.9), pop(3, 0.5, 0.9)],
                vec![
                    conv(0, 1, (1, 4), weights(36, -0.2, 0.7)),
                    avg_pool(1, 2, 4),
                    conv(0, 2, (1, 1), weights(9, -0.2, 0.5)),
                    dense(2, 3, weights(108, -0.2, 0.5)),
                ],
            ),
        ];
        let mut channel_last = Vec::new();
        for (i, with) in nets.iter().enumerate() {
            let mut without = with.clone();
            for proj in &mut without.projections {
                match &mut proj.kind {
                    ProjKind::Conv {
                        pixels,
                        channel_last: cl,
                        ..
                    }
                    | ProjKind::Pool {
                        pixels,
                        channel_last: cl,
                        ..
                    } => {
                        assert!(
                            pixels.take().is_some(),
                            "net {i}: a small geometry has a table"
                        );
                        channel_last.push(*cl);
                    }
                    ProjKind::Dense { .. } => {}
                }
            }
            let n_in = with.spec().input_size;
            let frames = weights(3 * n_in, 0.0, 1.0);
            for s in ALL {
                for f in [1, 4] {
                    let a = run_dense(with, &frames, 3, Some(0), &cfg(s, f));
                    let b = run_dense(&without, &frames, 3, Some(0), &cfg(s, f));
                    assert!(a.spikes[0] > 0 && a.spikes[1] > 0, "net {i} {s:?}: {a:?}");
                    assert_eq!(a, b, "net {i} {s:?} F = {f}");
                }
            }
        }
        assert!(channel_last.contains(&true) && channel_last.contains(&false));
    }
}
