//! The event loop of one sample (R3-R7): [`run_prepared`] picks the build (baseline or
//! AVX2) and the R8.3 pass, and `run_prepared_body` drives the phases of each timestep,
//! each a function named after its rule:
//!
//! ```text
//! for each timestep t:                 start_timestep         R4.1
//!     forward step 0:                  deliver_input_frame    R4.2
//!                                      settle_input_targets   R4.7
//!     for k = 0, 1, ...:               integrate_fire         R4.3.1-2 (+ R7.1-2)
//!                                      record_latency         R7.7
//!                                      record_decision        R7.9
//!                                      stop_check             R4.3.3, R6
//!                                      settle_only            R4.3.4 (nothing pending,
//!                                                             a population due)
//!                                      select                 R5
//!                                      deliver_group          R4.3.4
//!     the timestep's counters:         end_timestep           R7.5, R7.9
//! ```
//!
//! With `ws.trace` set, the input frame, the fire phase and the group of each forward
//! step are also recorded (R7.10, `trace.rs`, out of line).
//!
//! With `prioritize_input = false` (R4.13) the loop is compiled a second time, out of
//! line (`PRIO = false`, [`run_prepared`] picks it per sample): forward step 0 enqueues
//! the frame as input entries (`pending_inputs.rs`), nothing settles there, and each
//! group is selected among the input entries and the pending neurons
//! (`select_with_inputs`); its input entries are delivered first
//! (`deliver_input_entries`). The default loop has none of this code.
//!
//! Every phase is `#[inline(always)]`: the loop is compiled twice (for the baseline and
//! with AVX2 enabled), and whatever it calls must be inlined into the AVX2 copy to be
//! compiled with AVX2. Cold paths (errors) are kept out of line.

use super::add;
use super::config::{RunConfig, StopMode};
use super::deliver::{deliver_sources, InputEvents, Members};
use super::fire::{integrate, is_finite, FireCtx};
use super::input::{nonzero_inputs, Prepared, PreparedSample};
use super::interrupt::Interrupt;
use super::trace::{
    self, record_group, record_input_deliveries, record_inputs, record_membranes, record_settles,
    record_spikes,
};
use super::workspace::{split_carry, synaptic_currents, Workspace};
use crate::alloc;
use crate::counters::SampleResult;
use crate::error::{EngineError, Location};
use crate::kernels::has_avx2;
use crate::network::Network;
use crate::rng::{uniform, STREAM_INPUT_DROPOUT, STREAM_SPIKE_DROPOUT};
use crate::scheduler::{PendingSet, Scheduler, SelectCtx};

/// Runs one validated sample (R3-R7), with the event loop compiled for AVX2 when the
/// CPU has it (see `crate::kernels`: the same float operations, bit-identical results).
///
/// R8.3 in two passes: the fast path checks that every membrane is finite once per
/// timestep only (folded into the leak and the clearing of `v_pre`, passes over all
/// neurons that happen anyway); a non-finite membrane stays non-finite until then (NaN
/// and -inf never fire; +inf fires and is kept in `v_pre`). Only when it saw one is the
/// sample run again with the check at every integrate, which names the exact forward
/// step and neuron. (Checking at every integrate always cost up to 15 % for momentum.)
pub(super) fn run_prepared(
    net: &Network,
    ps: &PreparedSample,
    sample: u32,
    config: &RunConfig,
    ws: &mut Workspace,
    stop: Option<&Interrupt>,
) -> Result<SampleResult, EngineError> {
    let job = Job {
        net,
        ps,
        sample,
        config,
        stop,
    };
    if !config.prioritize_input {
        return run_prepared_npi(job, ws);
    }
    run_fast_then_checked::<true>(job, ws)
}

/// One sample as the dispatch functions below pass it along (with the workspace).
#[derive(Clone, Copy)]
struct Job<'a> {
    net: &'a Network,
    ps: &'a PreparedSample<'a>,
    /// The `sample` argument of R5.5.
    sample: u32,
    config: &'a RunConfig,
    stop: Option<&'a Interrupt<'a>>,
}

/// [`run_prepared`] with non-prioritised input (R4.13): the event loop compiled with
/// input entries in the pending set, kept out of line (the prioritised loop, the
/// default, has none of its code).
#[cold]
#[inline(never)]
fn run_prepared_npi(job: Job<'_>, ws: &mut Workspace) -> Result<SampleResult, EngineError> {
    run_fast_then_checked::<false>(job, ws)
}

/// The fast run of a sample; only when it saw a non-finite membrane, the checked re-run.
#[inline(always)]
fn run_fast_then_checked<const PRIO: bool>(
    job: Job<'_>,
    ws: &mut Workspace,
) -> Result<SampleResult, EngineError> {
    let fast = run_with_carry::<false, PRIO>(job, ws);
    if !std::mem::take(&mut ws.non_finite) {
        return fast;
    }
    run_prepared_checked::<PRIO>(job, ws)
}

/// R4.9: the recurrent projections' currents are carried (scheduler `layered` and a
/// recurrent projection in the network). The event loop is compiled with and without
/// the carry, so that a network without it runs no recurrence code.
#[inline(always)]
fn carries(net: &Network, config: &RunConfig) -> bool {
    net.any_recurrent && config.scheduler == Scheduler::Layered
}

/// The event loop compiled with or without the carry (R4.9), as [`carries`] says.
#[inline(always)]
fn run_with_carry<const CHECK: bool, const PRIO: bool>(
    job: Job<'_>,
    ws: &mut Workspace,
) -> Result<SampleResult, EngineError> {
    match (carries(job.net, job.config), job.net.all_dense) {
        (true, _) => run_prepared_on_cpu::<CHECK, true, PRIO, false>(job, ws),
        (false, true) => run_prepared_on_cpu::<CHECK, false, PRIO, true>(job, ws),
        (false, false) => run_prepared_on_cpu::<CHECK, false, PRIO, false>(job, ws),
    }
}

/// The checked re-run of [`run_prepared`], kept out of line (it runs only for a sample
/// whose membrane overflowed).
#[cold]
#[inline(never)]
fn run_prepared_checked<const PRIO: bool>(
    job: Job<'_>,
    ws: &mut Workspace,
) -> Result<SampleResult, EngineError> {
    run_with_carry::<true, PRIO>(job, ws)
}

#[inline(always)]
fn run_prepared_on_cpu<
    const CHECK: bool,
    const CARRY: bool,
    const PRIO: bool,
    const MULTI: bool,
>(
    job: Job<'_>,
    ws: &mut Workspace,
) -> Result<SampleResult, EngineError> {
    let Job {
        net,
        ps,
        sample,
        config,
        stop,
    } = job;
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked at run time just above).
            return unsafe {
                run_prepared_avx2::<CHECK, CARRY, PRIO, MULTI>(net, ps, sample, config, ws, stop)
            };
        }
    }
    run_prepared_body::<CHECK, CARRY, PRIO, MULTI>(net, ps, sample, config, ws, stop)
}

/// The event loop compiled for AVX2. Its arguments are separate references, not a
/// [`Job`]: a reference argument tells the compiler that nothing else writes what it
/// points to, which a reference read from a struct does not (as a `Job` argument the
/// loop ran 1-2 % more instructions).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_prepared_avx2<
    const CHECK: bool,
    const CARRY: bool,
    const PRIO: bool,
    const MULTI: bool,
>(
    net: &Network,
    ps: &PreparedSample,
    sample: u32,
    config: &RunConfig,
    ws: &mut Workspace,
    stop: Option<&Interrupt>,
) -> Result<SampleResult, EngineError> {
    run_prepared_body::<CHECK, CARRY, PRIO, MULTI>(net, ps, sample, config, ws, stop)
}

/// What the phases of one sample read and do not change.
struct Run<'a> {
    net: &'a Network,
    config: &'a RunConfig,
    /// The `sample` argument of R5.5.
    sample: u32,
    /// The location that errors name (`"sample {i}"`).
    loc: &'a Location,
    label: Option<usize>,
    /// R4.6: the refractory dropout probability of each non-input population.
    dropout: Vec<f64>,
    /// R4.11: spike dropout is on (`p > 0`); off, nothing is drawn.
    drop_spikes: bool,
    /// Per non-input population: it has an outgoing projection (its spikes are
    /// enqueued, R4.3.2; also the output's, when a recurrent projection leaves it).
    has_out: Vec<bool>,
    /// The output population (non-input index), the id of its first neuron and its
    /// size.
    out_pop: usize,
    out_off: usize,
    n_out: usize,
}

impl<'a> Run<'a> {
    // Inlined, as the phases are, so that the fields stay in registers (a `Run` whose
    // address escapes into a call would be read from memory).
    #[inline(always)]
    fn new(
        net: &'a Network,
        ps: &'a PreparedSample<'a>,
        sample: u32,
        config: &'a RunConfig,
    ) -> Run<'a> {
        let n_pops = net.n_populations();
        let out_pop = n_pops - 1;
        Run {
            net,
            config,
            sample,
            loc: &ps.location,
            label: ps.label,
            dropout: match &config.refractory_dropout {
                Some(p) => p.clone(),
                None => vec![0.0; n_pops],
            },
            drop_spikes: config.spike_dropout > 0.0,
            has_out: (0..n_pops)
                .map(|p| !net.outgoing[p + 1].is_empty())
                .collect(),
            out_pop,
            out_off: net.pop_offset[out_pop],
            n_out: net.n_outputs(),
        }
    }
}

/// The forward step being run and the counters of its timestep that R7.7 reads.
struct Timestep {
    t: usize,
    /// The forward step `k`.
    k: u32,
    /// The forward step of the first output spike of the timestep (R6.2, R7.7).
    k0: Option<u32>,
    /// The label's output neuron has spiked in this timestep (R7.7).
    correct_seen: bool,
    /// Spikes fired in the timestep so far.
    spikes: u64,
    /// Synops of the deliveries of the timestep so far.
    synops: u64,
}

impl Timestep {
    /// Forward step 0 of timestep `t`.
    #[inline(always)]
    fn new(t: usize) -> Timestep {
        Timestep {
            t,
            k: 0,
            k0: None,
            correct_seen: false,
            spikes: 0,
            synops: 0,
        }
    }

    /// On to forward step `k + 1`.
    #[inline(always)]
    fn next_step(&mut self, loc: &Location) -> Result<(), EngineError> {
        self.k = self
            .k
            .checked_add(1)
            .ok_or_else(|| EngineError::overflow(loc, "forward step index"))?;
        Ok(())
    }
}

/// R7.9: the running prediction of the sample, kept up to date by the output spikes
/// as they are counted (argmax of `output_counts`, ties to the smallest index, -1
/// before any output spike).
struct Running {
    prediction: i64,
}

impl Running {
    /// The running prediction after output neuron `c` spiked once more (`counts` holds
    /// the counts with that spike). Only `c` changed, by one: it takes over when its
    /// count now exceeds the leader's, or equals it with a smaller index.
    #[inline(always)]
    fn count(&mut self, counts: &[i64], c: usize) {
        let takes_over = match usize::try_from(self.prediction) {
            Ok(b) => counts[c] > counts[b] || (counts[c] == counts[b] && c < b),
            Err(_) => true,
        };
        if takes_over {
            self.prediction = c as i64;
        }
    }
}

/// What the fire phase of a forward step saw of the output population (R7.7).
struct Fired {
    /// The smallest output index that spiked.
    class: Option<usize>,
    /// The label's output neuron spiked.
    label_hit: bool,
}

/// The driver of one sample: the phases of R4 in order (see the module documentation),
/// then the sample's totals (R7) and the prediction. With `CHECK`, R8.3 is checked at
/// every integrate; without, once per timestep (see [`run_prepared`]). With `CARRY`,
/// the recurrent projections' currents are carried (R4.9, [`carries`]). Without
/// `PRIO`, the input is not prioritised (R4.13): forward step 0 enqueues it as input
/// entries, which the scheduler selects with the pending neurons.
#[inline(always)]
fn run_prepared_body<const CHECK: bool, const CARRY: bool, const PRIO: bool, const MULTI: bool>(
    net: &Network,
    ps: &PreparedSample,
    sample: u32,
    config: &RunConfig,
    ws: &mut Workspace,
    interrupt: Option<&Interrupt>,
) -> Result<SampleResult, EngineError> {
    let run = Run::new(net, ps, sample, config);
    let loc = run.loc;
    let mut res = SampleResult::new(
        ps.timesteps,
        run.n_out,
        net.n_populations(),
        net.n_projections(),
        loc,
    )?;
    start_sample(&run, ps, ws)?;
    let mut sparse_cursor = 0usize;
    let mut synops: u64 = 0;
    let mut spikes_total: u64 = 0;
    let mut running = Running { prediction: -1 };
    let mut last_poll = std::time::Instant::now();
    for t in 0..ps.timesteps {
        // Ctrl-C inside one long sample, not only between samples.
        if interrupt.is_some_and(|i| i.stop(t, &mut last_poll)) {
            return Err(EngineError::Cancelled);
        }
        start_timestep::<CHECK>(net, ws, loc)?;
        let mut ts = Timestep::new(t);
        deliver_input_frame::<PRIO, MULTI>(
            &run,
            &ps.input,
            ws,
            &mut res,
            &mut ts,
            &mut sparse_cursor,
        )?;
        if PRIO && net.any_settling {
            settle_input_targets(net, ws);
        }
        loop {
            let before = running.prediction;
            let fired =
                integrate_fire::<CHECK, CARRY, MULTI>(&run, ws, &mut res, &ts, &mut running)?;
            ts.spikes += ws.fired.len() as u64;
            spikes_total += ws.fired.len() as u64;
            record_latency(&mut res, &mut ts, &fired);
            if running.prediction != before {
                record_decision(&mut res, &ts, spikes_total, synops);
            }
            // R7.6 (R4.13: an input entry is one pending entry)
            let queued = ws.pending.len() + if PRIO { 0 } else { ws.inputs.len() };
            res.queue_peak = res.queue_peak.max(queued as i64);
            if stop_check(config, &ts) {
                // R6.4 (R4.13: input entries are dropped too, and not counted)
                let dropped = ws.pending.drop_all();
                if !PRIO {
                    ws.inputs.drop_all();
                }
                add(&mut res.dropped_spikes, dropped, loc, "dropped_spikes")?;
                break;
            }
            if ws.pending.is_empty() && (PRIO || ws.inputs.is_empty()) {
                if ws.n_due == 0 {
                    break;
                }
                settle_only(ws);
                ts.next_step(loc)?;
                continue;
            }
            let mut group = std::mem::take(&mut ws.group);
            if PRIO {
                select(&run, ws, &ts, &mut group);
            } else {
                select_with_inputs(&run, ws, &ts, &mut group);
            }
            if let Some(trace) = ws.trace.as_mut() {
                if !PRIO {
                    let inputs = &ws.inputs;
                    record_input_deliveries(
                        trace,
                        ts.t,
                        ts.k,
                        &inputs.group_index,
                        &inputs.group_value,
                    );
                }
                record_group(trace, net, ts.t, ts.k, &group);
            }
            if !PRIO {
                deliver_input_entries::<MULTI>(&run, ws, &mut res, &mut ts.synops)?;
            }
            deliver_group::<CARRY, MULTI>(&run, ws, &mut res, &group, &mut ts.synops)?;
            ws.group = group;
            ts.next_step(loc)?;
        }
        end_timestep(&mut res, &ts, &mut synops, loc)?;
        if let Some(trace) = ws.trace.as_mut() {
            let syn = net
                .any_synaptic
                .then(|| synaptic_currents(&ws.cur, ws.v.len(), net.any_recurrent));
            record_membranes(trace, net, &ws.v, syn);
        }
    }
    let membranes_finite = |ws: &Workspace| ws.v.iter().chain(&ws.v_pre).all(|&x| is_finite(x));
    if !CHECK && (!membranes_finite(ws) || !syn_finite(net, ws)) {
        return Err(ws.saw_non_finite(loc)); // in the last timestep
    }
    res.synops = i64::try_from(synops).map_err(|_| EngineError::overflow(loc, "synops"))?;
    res.spikes_total =
        i64::try_from(spikes_total).map_err(|_| EngineError::overflow(loc, "spikes_total"))?;
    res.compute_prediction();
    Ok(res)
}

/// R3.3: the state at the start of a sample, the scheduler's queue, and room for a
/// whole dense frame's non-zero inputs (kept between samples).
#[inline(always)]
fn start_sample(run: &Run, ps: &PreparedSample, ws: &mut Workspace) -> Result<(), EngineError> {
    ws.reset();
    if let Prepared::Dense(_) = &ps.input {
        let n_in = run.net.input_size();
        let nz = &mut ws.nonzero;
        alloc::reserve(nz, n_in.saturating_sub(nz.len()), run.loc, "input scan")?;
        let values = &mut ws.nonzero_values;
        alloc::reserve(
            values,
            n_in.saturating_sub(values.len()),
            run.loc,
            "input scan",
        )?;
    }
    ws.pending.set_scheduler(run.config.scheduler);
    Ok(())
}

/// R4.1: leak, clear the refractory flags and `v_pre`, and make every settling
/// population due. R8.3: the fast path checks on the way that the membranes (and the
/// synaptic currents, R4.12) of the timestep before were finite.
#[inline(always)]
fn start_timestep<const CHECK: bool>(
    net: &Network,
    ws: &mut Workspace,
    loc: &Location,
) -> Result<(), EngineError> {
    let mut finite = true;
    for (v, b) in ws.v.iter_mut().zip(&net.beta) {
        if !CHECK {
            finite &= is_finite(*v);
        }
        *v *= *b;
    }
    ws.refractory.fill(false);
    if net.any_settling {
        // R4.1 (3): every settling population becomes due (R4.7).
        ws.due.copy_from_slice(&net.settling);
        ws.n_due = net.settling.iter().filter(|&&s| s).count();
    }
    for x in ws.v_pre.iter_mut() {
        if !CHECK {
            finite &= is_finite(*x);
        }
        *x = 0.0;
    }
    if !CHECK && (!finite || !syn_finite(net, ws)) {
        return Err(ws.saw_non_finite(loc));
    }
    Ok(())
}

/// R8.3 on the fast path (see [`run_prepared`]): whether every synaptic current (R4.12)
/// is finite. A non-finite one of a refractory neuron has not reached its membrane yet;
/// true at once for a network without synaptic populations.
#[inline(always)]
fn syn_finite(net: &Network, ws: &Workspace) -> bool {
    !net.any_synaptic
        || synaptic_currents(&ws.cur, ws.v.len(), net.any_recurrent)
            .iter()
            .all(|&x| is_finite(x))
}

/// R4.7: the due populations that a projection from the input targets settle in
/// forward step 0, whether or not the frame has non-zero values: they are touched, and
/// the integrate pass settles every touched due population.
#[inline(always)]
fn settle_input_targets(net: &Network, ws: &mut Workspace) {
    for &p in &net.input_settling_targets {
        if ws.due[p] {
            ws.touch.pop(p);
        }
    }
}

/// R4.3.4: the pending set is empty and a population is still due: the next forward
/// step delivers nothing and settles the due population of the lowest index (touched
/// here; the integrate pass settles it, R4.7).
#[inline(always)]
fn settle_only(ws: &mut Workspace) {
    if let Some(p) = ws.due.iter().position(|&d| d) {
        ws.touch.pop(p);
    }
}

/// R4.2: forward step 0 delivers the input frame of timestep `ts.t` (R2.3), in input
/// index order; counts its events (R7.3). `sparse_cursor` is the first sparse event of
/// the timestep (events are sorted by time). Without `PRIO` (R4.13) the events enter
/// the pending set as input entries instead (counted and traced as well).
#[inline(always)]
fn deliver_input_frame<const PRIO: bool, const MULTI: bool>(
    run: &Run,
    input: &Prepared,
    ws: &mut Workspace,
    res: &mut SampleResult,
    ts: &mut Timestep,
    sparse_cursor: &mut usize,
) -> Result<(), EngineError> {
    let (net, loc) = (run.net, run.loc);
    match input {
        Prepared::Dense(frames) => {
            let n_in = net.input_size();
            let frame = &frames[ts.t * n_in..(ts.t + 1) * n_in];
            // `nonzero` keeps `n_in` slots between timesteps (sized once, not zeroed
            // again); the first `count` are this frame's.
            let mut nz = std::mem::take(&mut ws.nonzero);
            nz.resize(n_in, 0);
            let mut count = nonzero_inputs(frame, &mut nz);
            if run.config.input_dropout > 0.0 {
                let draw = Draw::new(run, ts.t as u32, 0);
                count = keep_inputs(draw, run.config.input_dropout, &mut nz[..count]);
            }
            let idx = &nz[..count];
            add(&mut res.input_events, count as u64, loc, "input_events")?;
            let mut values = std::mem::take(&mut ws.nonzero_values);
            values.clear();
            values.extend(idx.iter().map(|&i| frame[i as usize]));
            if let Some(trace) = ws.trace.as_mut() {
                record_inputs(trace, ts.t, idx, &values);
            }
            if PRIO {
                let src = InputEvents {
                    index: idx,
                    value: &values,
                };
                ts.synops += deliver_inputs::<MULTI>(net, &src, ws, res, loc)?;
            } else {
                ws.inputs.enqueue(idx, &values);
            }
            ws.nonzero = nz;
            ws.nonzero_values = values;
        }
        Prepared::Sparse {
            t: et,
            index,
            value,
        } => {
            let t32 = ts.t as u32; // timesteps <= 2^32 was validated
            let a = *sparse_cursor;
            while *sparse_cursor < et.len() && et[*sparse_cursor] == t32 {
                *sparse_cursor += 1;
            }
            let b = *sparse_cursor;
            let (mut kept_index, mut kept_value) = (Vec::new(), Vec::new());
            let (index, value) = if run.config.input_dropout > 0.0 {
                keep_sparse_inputs(
                    Draw::new(run, t32, 0),
                    run.config.input_dropout,
                    &index[a..b],
                    &value[a..b],
                    &mut kept_index,
                    &mut kept_value,
                );
                (&kept_index[..], &kept_value[..])
            } else {
                (&index[a..b], &value[a..b])
            };
            add(
                &mut res.input_events,
                index.len() as u64,
                loc,
                "input_events",
            )?;
            if let Some(trace) = ws.trace.as_mut() {
                record_inputs(trace, ts.t, index, value);
            }
            if PRIO {
                let src = InputEvents { index, value };
                ts.synops += deliver_inputs::<MULTI>(net, &src, ws, res, loc)?;
            } else {
                ws.inputs.enqueue(index, value);
            }
        }
    }
    Ok(())
}

/// The arguments of R5.5's random function up to `k`, passed by value to the out-of-line
/// dropout paths (a `&Run` or `&Timestep` escaping into a call would keep them in memory
/// in the event loop).
#[derive(Clone, Copy)]
struct Draw {
    seed: u64,
    sample: u32,
    t: u32,
    k: u32,
}

impl Draw {
    #[inline(always)]
    fn new(run: &Run, t: u32, k: u32) -> Draw {
        Draw {
            seed: run.config.seed,
            sample: run.sample,
            t,
            k,
        }
    }
}

/// R4.10: keeps the input indices `idx` (increasing) that input dropout does not drop at
/// timestep `t`, in order, at the front of `idx`; returns how many. Out of line: a run
/// with `input_dropout = 0` never calls it (and draws nothing).
#[cold]
#[inline(never)]
fn keep_inputs(draw: Draw, p: f64, idx: &mut [u32]) -> usize {
    let Draw {
        seed, sample, t, ..
    } = draw;
    let mut kept = 0;
    for n in 0..idx.len() {
        let i = idx[n];
        if (uniform(seed, sample, t, 0, i, STREAM_INPUT_DROPOUT) as f64) >= p {
            idx[kept] = i;
            kept += 1;
        }
    }
    kept
}

/// R4.10 for sparse events: the events of `index` / `value` that input dropout keeps at
/// timestep `t` (all events of one input index share its draw), into `kept_*`.
#[cold]
#[inline(never)]
fn keep_sparse_inputs(
    draw: Draw,
    p: f64,
    index: &[u32],
    value: &[f32],
    kept_index: &mut Vec<u32>,
    kept_value: &mut Vec<f32>,
) {
    let Draw {
        seed, sample, t, ..
    } = draw;
    for (&i, &x) in index.iter().zip(value) {
        if (uniform(seed, sample, t, 0, i, STREAM_INPUT_DROPOUT) as f64) >= p {
            kept_index.push(i);
            kept_value.push(x);
        }
    }
}

/// R4.11: the ids of `ids` (one population's spikes of step `k`, increasing) that spike
/// dropout keeps, enqueued into the pending set; a dropped spike of a pending neuron
/// updates its momentum key (`PendingSet::refresh_key`). Out of line: a run with
/// `spike_dropout = 0` never calls it (and draws nothing).
///
/// No allocation: the kept ids are gathered in a buffer on the stack and enqueued a
/// full buffer at a time, in order. The pending set is the same as after enqueuing
/// them all at once (`PendingSet::enqueue_all` takes its spikes one by one, and on an
/// overflow the sample ends with an error).
#[cold]
#[inline(never)]
fn enqueue_kept(
    draw: Draw,
    pd: f64,
    pending: &mut PendingSet,
    ids: &[u32],
    p: usize,
    v_pre: &[f32],
) -> bool {
    const KEPT: usize = 64;
    let Draw { seed, sample, t, k } = draw;
    let mut kept = [0u32; KEPT];
    let mut n = 0;
    for &q in ids {
        if (uniform(seed, sample, t, k, q, STREAM_SPIKE_DROPOUT) as f64) >= pd {
            kept[n] = q;
            n += 1;
            if n == KEPT {
                if !pending.enqueue_all(&kept, p, v_pre) {
                    return false;
                }
                n = 0;
            }
        } else {
            // Dropped: a pending entry of q (refractory dropout) keeps its multiplicity
            // but takes the new v_pre as its momentum key.
            pending.refresh_key(q, v_pre[q as usize]);
        }
    }
    pending.enqueue_all(&kept[..n], p, v_pre)
}

/// R4.3.1 integrate and R4.3.2 fire: the threshold test and reset (`fire::integrate`),
/// then, in increasing id order, the spike counters (R7.2), the readout of the output
/// population (R7.1) and the pending set (the spikes of populations with an outgoing
/// projection). The spikes are left in `ws.fired`.
#[inline(always)]
fn integrate_fire<const CHECK: bool, const CARRY: bool, const MULTI: bool>(
    run: &Run,
    ws: &mut Workspace,
    res: &mut SampleResult,
    ts: &Timestep,
    running: &mut Running,
) -> Result<Fired, EngineError> {
    let fc = FireCtx {
        dropout: &run.dropout,
        seed: run.config.seed,
        sample: run.sample,
        t: ts.t as u32,
        k: ts.k,
    };
    if run.net.any_settling {
        if let Some(trace) = ws.trace.as_mut() {
            record_settles(trace, run.net, ts.t, ts.k, &ws.touch.pops, &ws.due);
        }
    }
    let integrated = if CARRY {
        integrate::<CHECK, true, true, MULTI>(run.net, ws, &fc)
    } else if run.net.any_settling {
        integrate::<CHECK, true, false, MULTI>(run.net, ws, &fc)
    } else {
        integrate::<CHECK, false, false, MULTI>(run.net, ws, &fc)
    };
    if let Err((p, id)) = integrated {
        let i = id as usize - run.net.pop_offset[p];
        return Err(membrane_overflow(run.loc, ts.t, ts.k, p + 1, i));
    }
    let loc = run.loc;
    if let Some(trace) = ws.trace.as_mut() {
        let seen = trace::Fired {
            t: ts.t,
            k: ts.k,
            ids: &ws.fired,
            pops: &ws.fired_pops,
            v_pre: &ws.v_pre,
        };
        record_spikes(trace, run.net, seen);
    }
    let mut fired = Fired {
        class: None,
        label_hit: false,
    };
    for &(p, a, b) in &ws.fired_pops {
        add(&mut res.spikes[p], (b - a) as u64, loc, "spikes")?;
        let ids = &ws.fired[a..b];
        if p == run.out_pop {
            read_out(run, res, ts.t, ids, &mut fired, running)?;
        } else if run.has_out[p]
            && !(if run.drop_spikes {
                let draw = Draw::new(run, ts.t as u32, ts.k);
                enqueue_kept(
                    draw,
                    run.config.spike_dropout,
                    &mut ws.pending,
                    ids,
                    p,
                    &ws.v_pre,
                )
            } else {
                ws.pending.enqueue_all(ids, p, &ws.v_pre)
            })
        {
            return Err(EngineError::overflow(loc, "pending multiplicity"));
        }
    }
    // A recurrent projection from the output (R1.2): its spikes are enqueued too, after
    // the other populations' (the output is the last population).
    if run.has_out[run.out_pop] {
        if let Some(&(p, a, b)) = ws.fired_pops.last() {
            if p == run.out_pop {
                let ids = &ws.fired[a..b];
                if run.drop_spikes {
                    let draw = Draw::new(run, ts.t as u32, ts.k);
                    if !enqueue_kept(
                        draw,
                        run.config.spike_dropout,
                        &mut ws.pending,
                        ids,
                        p,
                        &ws.v_pre,
                    ) {
                        return Err(EngineError::overflow(loc, "pending multiplicity"));
                    }
                } else {
                    enqueue_output(&mut ws.pending, ids, p, &ws.v_pre, loc)?;
                }
            }
        }
    }
    Ok(fired)
}

/// R4.3.2: the spikes `ids` of the output population `p` enter the pending set when a
/// recurrent projection leaves it (R1.2). Out of line: only a recurrent network runs
/// it, and the version-1 fire phase keeps its code.
#[cold]
#[inline(never)]
fn enqueue_output(
    pending: &mut PendingSet,
    ids: &[u32],
    p: usize,
    v_pre: &[f32],
    loc: &Location,
) -> Result<(), EngineError> {
    if pending.enqueue_all(ids, p, v_pre) {
        Ok(())
    } else {
        Err(EngineError::overflow(loc, "pending multiplicity"))
    }
}

/// R7.1: the spikes `ids` of the output population at timestep `t`, in id order, and
/// the running prediction of R7.9.
#[inline(always)]
fn read_out(
    run: &Run,
    res: &mut SampleResult,
    t: usize,
    ids: &[u32],
    fired: &mut Fired,
    running: &mut Running,
) -> Result<(), EngineError> {
    let (loc, n_out) = (run.loc, run.n_out);
    for &q in ids {
        let c = q as usize - run.out_off;
        add(&mut res.output_counts[c], 1, loc, "output_counts")?;
        running.count(&res.output_counts, c);
        add(
            &mut res.timestep_output_counts[t * n_out + c],
            1,
            loc,
            "output_counts",
        )?;
        if fired.class.is_none() {
            fired.class = Some(c);
        }
        if run.label == Some(c) {
            fired.label_hit = true;
        }
    }
    Ok(())
}

/// R8.3: the error of a membrane that overflowed float32 at timestep `t`, forward step
/// `k`, in neuron `i` of population `pop` (counted with the input as 0, R1.1). (Plain
/// values, not the `Run` and `Timestep`: their address would escape into this call.)
#[cold]
#[inline(never)]
fn membrane_overflow(loc: &Location, t: usize, k: u32, pop: usize, i: usize) -> EngineError {
    let at = match *loc {
        // t < 2^32 (R2.1) and neuron ids are u32 (R7.8): the casts are exact.
        Location::Sample(sample) => Location::Neuron {
            sample,
            timestep: t as u32,
            forward_step: k,
            population: pop as u32,
            neuron: i as u32,
        },
        ref other => other.clone(), // a sample is always named by Location::Sample
    };
    EngineError::overflow(at, "membrane")
}

/// R7.7: the latency records of the timestep, at the first forward step with an output
/// spike and at the first one in which the label's neuron spikes (spikes of steps
/// `0..=k`, synops integrated so far).
#[inline(always)]
fn record_latency(res: &mut SampleResult, ts: &mut Timestep, fired: &Fired) {
    let (t, k) = (ts.t, ts.k);
    if let Some(c) = fired.class {
        if ts.k0.is_none() {
            ts.k0 = Some(k);
            res.first_output_step[t] = k as i64;
            res.first_output_class[t] = c as i64;
            res.first_output_spikes[t] = ts.spikes as i64;
            res.first_output_synops[t] = ts.synops as i64;
        }
    }
    if fired.label_hit && !ts.correct_seen {
        ts.correct_seen = true;
        res.first_correct_step[t] = k as i64;
        res.first_correct_spikes[t] = ts.spikes as i64;
        res.first_correct_synops[t] = ts.synops as i64;
    }
}

/// R7.9: the running prediction changed in forward step `ts.k` of timestep `ts.t`:
/// the stable decision is (so far) this step. `spikes_total` holds the spikes of the
/// sample up to this step included, `synops` those of the earlier timesteps (this
/// timestep's integrated deliveries are `ts.synops`, as for R7.7).
#[inline(always)]
fn record_decision(res: &mut SampleResult, ts: &Timestep, spikes_total: u64, synops: u64) {
    res.decision_step = res.forward_steps + ts.k as i64;
    res.decision_timestep = ts.t as i64;
    res.decision_spikes = spikes_total as i64;
    res.decision_synops = synops.saturating_add(ts.synops) as i64;
}

/// R4.3.3, the stop check (R6): whether the timestep ends after forward step `ts.k`,
/// by `first_output` (R6.2) or by the `max_steps` cap (R6.3).
#[inline(always)]
fn stop_check(config: &RunConfig, ts: &Timestep) -> bool {
    let mut stop = match (config.stop, ts.k0) {
        (StopMode::FirstOutput { extra_steps }, Some(k0)) => ts.k - k0 >= extra_steps,
        _ => false,
    };
    if let Some(kmax) = config.max_steps {
        stop |= ts.k as u64 + 1 >= kmax as u64;
    }
    stop
}

/// R5: the scheduler picks the group of forward step `ts.k` (non-empty: the pending
/// set is not) and removes it from the pending set.
#[inline(always)]
fn select(run: &Run, ws: &mut Workspace, ts: &Timestep, group: &mut Vec<(u32, u32)>) {
    let ctx = SelectCtx {
        seed: run.config.seed,
        sample: run.sample,
        t: ts.t as u32,
        k: ts.k,
    };
    let f = run.config.forward_group_size;
    ws.pending.select(f, ctx, &ws.v_pre, group);
    debug_assert!(!group.is_empty(), "a non-empty pending set yields a group");
}

/// R4.13 with R5: the scheduler picks the group of forward step `ts.k` among the
/// pending input entries and neurons (non-empty: one of them is pending) and removes it
/// from the pending set: its input entries in `ws.inputs`, its neurons in `group`.
#[inline(always)]
fn select_with_inputs(run: &Run, ws: &mut Workspace, ts: &Timestep, group: &mut Vec<(u32, u32)>) {
    let ctx = SelectCtx {
        seed: run.config.seed,
        sample: run.sample,
        t: ts.t as u32,
        k: ts.k,
    };
    let (f, s) = (run.config.forward_group_size, run.config.scheduler);
    ws.inputs
        .select(&mut ws.pending, s, f, ctx, &ws.v_pre, group);
    debug_assert!(!group.is_empty() || !ws.inputs.group_index.is_empty());
}

/// R4.13: delivers the input entries of the group (`ws.inputs`), in input index order,
/// as R4.2 delivers an input frame, adding the synops to `synops` (R7.4). Their
/// deliveries touch the populations that the input projects to, which settles the due
/// ones (R4.7).
#[inline(always)]
fn deliver_input_entries<const MULTI: bool>(
    run: &Run,
    ws: &mut Workspace,
    res: &mut SampleResult,
    synops: &mut u64,
) -> Result<(), EngineError> {
    let inputs = &ws.inputs;
    if inputs.group_index.is_empty() {
        return Ok(());
    }
    let src = InputEvents {
        index: &inputs.group_index,
        value: &inputs.group_value,
    };
    let spp = &mut res.synops_per_projection;
    let (cur, touch) = (&mut ws.cur, &mut ws.touch);
    *synops +=
        deliver_sources::<_, false, MULTI>(run.net, 0, &src, cur, &mut [], touch, spp, run.loc)?;
    Ok(())
}

/// R4.2: delivers the input events `src` of a timestep through the input's projections
/// (a frame's non-zero values, or a sparse input's events); returns their synops (R7.4).
#[inline(always)]
fn deliver_inputs<const MULTI: bool>(
    net: &Network,
    src: &InputEvents,
    ws: &mut Workspace,
    res: &mut SampleResult,
    loc: &Location,
) -> Result<u64, EngineError> {
    let spp = &mut res.synops_per_projection;
    let (cur, touch) = (&mut ws.cur, &mut ws.touch);
    deliver_sources::<_, false, MULTI>(net, 0, src, cur, &mut [], touch, spp, loc)
}

/// R4.3.4: delivers the group, cut into runs of members of one population (a
/// `layered` group is one run), adding the synops to `synops` (R7.4). With `CARRY`
/// the recurrent projections' currents are carried (R4.9).
#[inline(always)]
fn deliver_group<const CARRY: bool, const MULTI: bool>(
    run: &Run,
    ws: &mut Workspace,
    res: &mut SampleResult,
    group: &[(u32, u32)],
    synops: &mut u64,
) -> Result<(), EngineError> {
    let (net, loc) = (run.net, run.loc);
    let mut e = 0;
    while e < group.len() {
        let p = net.pop_of[group[e].0 as usize];
        // The run of members of population `p` (a plain loop: inlined in every build).
        let mut end = e + 1;
        while end < group.len() && net.pop_of[group[end].0 as usize] == p {
            end += 1;
        }
        let p = p as usize;
        let src = Members {
            run: &group[e..end],
            offset: net.pop_offset[p],
        };
        let spp = &mut res.synops_per_projection;
        let (cur, carry) = split_carry::<CARRY>(&mut ws.cur, ws.v.len());
        let touch = &mut ws.touch;
        *synops +=
            deliver_sources::<_, CARRY, MULTI>(net, p + 1, &src, cur, carry, touch, spp, loc)?;
        e = end;
    }
    Ok(())
}

/// R7.5: the forward steps of the timestep; R7.9: its spikes and synops; its synops
/// join the sample's.
#[inline(always)]
fn end_timestep(
    res: &mut SampleResult,
    ts: &Timestep,
    synops: &mut u64,
    loc: &Location,
) -> Result<(), EngineError> {
    let steps = ts.k as i64 + 1;
    res.timestep_forward_steps[ts.t] = steps;
    res.timestep_spikes[ts.t] = ts.spikes as i64;
    res.timestep_synops[ts.t] = ts.synops as i64;
    add(&mut res.forward_steps, steps as u64, loc, "forward_steps")?;
    *synops = synops
        .checked_add(ts.synops)
        .ok_or_else(|| EngineError::overflow(loc, "synops"))?;
    Ok(())
}
