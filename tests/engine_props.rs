//! Property tests of the engine on random small networks (dense, conv, pool, skip; half
//! of them with biases, reset modes and synaptic currents, SPEC_VERSION 2) with grid weights and biases
//! `k/256` and small integer inputs, so that every float32 sum is
//! exact and the results do not depend on summation order (R8.2).
//!
//! Besides invariants (counter consistency, spikes <= neurons * T without dropout,
//! forward_steps >= T, determinism across runs, run_sample vs run_batch, rayon thread
//! counts, dense vs sparse input, R4.5 layered equivalence), every run is compared
//! field by field with `oracle`, a deliberately naive implementation of
//! `docs/semantics.md` written independently of the engine's data structures (full
//! scans, explicit sequence numbers, full sorts for the schedulers).

use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

use _engine::rng::{hash, uniform};
use _engine::{
    run_batch, run_sample, Network, NetworkSpec, PoolKind, PopulationSpec, ProjectionKind,
    ProjectionSpec, ResetMode, RunConfig, SampleInput, SampleResult, Scheduler, StopMode,
};
use proptest::prelude::*;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() as usize) % (hi - lo + 1)
    }
    fn weight(&mut self) -> f32 {
        (self.range(0, 255) as f32 - 96.0) / 256.0
    }
    fn weights(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.weight()).collect()
    }
}

/// A LIF population; with `v2` also a bias (on the grid, 0 a third of the time,
/// scalar or per neuron) and a reset mode (R1.4, R4.8), each drawn independently.
fn lif(g: &mut Lcg, size: usize, v2: bool) -> PopulationSpec {
    let per_neuron = g.range(0, 3) == 0;
    let n = if per_neuron { size } else { 1 };
    let mut pop = PopulationSpec {
        size,
        threshold: (0..n).map(|_| g.range(64, 255) as f32 / 256.0).collect(),
        beta: (0..n)
            .map(|_| [1.0, 0.5, 0.75, 0.875, 0.0][g.range(0, 4)])
            .collect(),
        refractory_dropout: 0.0,
        bias: vec![0.0],
        reset: ResetMode::Zero,
        alpha: vec![0.0],
    };
    if v2 {
        if g.range(0, 2) > 0 {
            let nb = if g.range(0, 1) == 0 { size } else { 1 };
            pop.bias = (0..nb)
                .map(|_| (g.range(0, 96) as f32 - 40.0) / 256.0)
                .collect();
        }
        pop.reset = ResetMode::ALL[g.range(0, 3)];
        // R4.12: a synaptic current a third of the time, alpha scalar or per neuron
        // (some 0: LIF neurons in a synaptic population).
        match g.range(0, 5) {
            0 => pop.alpha = vec![[0.5, 0.75, 0.875, 0.25][g.range(0, 3)]],
            1 => {
                pop.alpha = (0..size)
                    .map(|_| [0.0, 0.5, 0.75, 1.0][g.range(0, 3)])
                    .collect()
            }
            _ => {}
        }
    }
    pop
}

fn dense(g: &mut Lcg, source: usize, target: usize, n_s: usize, n_d: usize) -> ProjectionSpec {
    ProjectionSpec {
        source,
        target,
        kind: ProjectionKind::Dense {
            weight: g.weights(n_s * n_d),
        },
    }
}

/// A conv projection on `(c, h, w)`; returns it and the output shape.
fn conv(
    g: &mut Lcg,
    source: usize,
    target: usize,
    (c, h, w): (usize, usize, usize),
) -> (ProjectionSpec, (usize, usize, usize)) {
    let c_out = g.range(1, 3);
    let ph = g.range(0, 1);
    let pw = g.range(0, 1);
    let kh = g.range(1, 3.min(h + 2 * ph));
    let kw = g.range(1, 3.min(w + 2 * pw));
    let sh = g.range(1, 2);
    let sw = g.range(1, 2);
    let oh = (h + 2 * ph - kh) / sh + 1;
    let ow = (w + 2 * pw - kw) / sw + 1;
    let spec = ProjectionSpec {
        source,
        target,
        kind: ProjectionKind::Conv2d {
            weight: g.weights(c_out * c * kh * kw),
            c_in: c,
            in_h: h,
            in_w: w,
            c_out,
            kh,
            kw,
            stride: (sh, sw),
            padding: (ph, pw),
        },
    };
    (spec, (c_out, oh, ow))
}

/// A pool projection (kernels 1 or 2 so that avg weights are powers of two).
fn pool(
    g: &mut Lcg,
    source: usize,
    target: usize,
    (c, h, w): (usize, usize, usize),
) -> (ProjectionSpec, (usize, usize, usize)) {
    let kh = g.range(1, 2.min(h));
    let kw = g.range(1, 2.min(w));
    let sh = g.range(1, 2);
    let sw = g.range(1, 2);
    let oh = (h - kh) / sh + 1;
    let ow = (w - kw) / sw + 1;
    let kind = if g.range(0, 1) == 0 {
        PoolKind::Avg
    } else {
        PoolKind::Sum
    };
    let spec = ProjectionSpec {
        source,
        target,
        kind: ProjectionKind::Pool {
            kind,
            channels: c,
            in_h: h,
            in_w: w,
            kh,
            kw,
            stride: (sh, sw),
        },
    };
    (spec, (c, oh, ow))
}

/// Random network of architecture `arch`; `skips` adds skip connections, `v2` biases and
/// reset modes.
fn build(arch: u8, seed: u64, skips: bool, v2: bool) -> NetworkSpec {
    let mut g = Lcg(seed);
    let mut populations = Vec::new();
    let mut projections = Vec::new();
    let input_size;
    match arch {
        0 => {
            // Dense MLP, 1-3 layers.
            let nl = g.range(1, 3);
            let mut sizes = vec![g.range(1, 8)];
            for _ in 0..nl {
                sizes.push(g.range(1, 8));
            }
            input_size = sizes[0];
            for l in 0..nl {
                populations.push(lif(&mut g, sizes[l + 1], v2));
                projections.push(dense(&mut g, l, l + 1, sizes[l], sizes[l + 1]));
            }
            if skips {
                for s in 0..nl {
                    for d in s + 2..=nl {
                        if g.range(0, 1) == 0 {
                            projections.push(dense(&mut g, s, d, sizes[s], sizes[d]));
                        }
                    }
                }
            }
        }
        1 | 2 => {
            // conv -> (pool) -> dense output.
            let shape = (g.range(1, 2), g.range(2, 5), g.range(2, 5));
            input_size = shape.0 * shape.1 * shape.2;
            let (p1, s1) = conv(&mut g, 0, 1, shape);
            populations.push(lif(&mut g, s1.0 * s1.1 * s1.2, v2));
            projections.push(p1);
            let mut last = (1, s1.0 * s1.1 * s1.2);
            if arch == 1 {
                let (p2, s2) = pool(&mut g, 1, 2, s1);
                populations.push(lif(&mut g, s2.0 * s2.1 * s2.2, v2));
                projections.push(p2);
                last = (2, s2.0 * s2.1 * s2.2);
            }
            let n_out = g.range(1, 4);
            populations.push(lif(&mut g, n_out, v2));
            projections.push(dense(&mut g, last.0, last.0 + 1, last.1, n_out));
            if skips {
                projections.push(dense(&mut g, 0, last.0 + 1, input_size, n_out));
            }
        }
        _ => {
            // pool on the input -> conv -> dense output.
            let shape = (g.range(1, 2), g.range(2, 5), g.range(2, 5));
            input_size = shape.0 * shape.1 * shape.2;
            let (p1, s1) = pool(&mut g, 0, 1, shape);
            populations.push(lif(&mut g, s1.0 * s1.1 * s1.2, v2));
            projections.push(p1);
            let (p2, s2) = conv(&mut g, 1, 2, s1);
            let n2 = s2.0 * s2.1 * s2.2;
            populations.push(lif(&mut g, n2, v2));
            projections.push(p2);
            let n_out = g.range(1, 4);
            populations.push(lif(&mut g, n_out, v2));
            projections.push(dense(&mut g, 2, 3, n2, n_out));
            if skips {
                let (p3, _) = conv(&mut g, 0, 2, shape);
                // Only usable when it produces the same shape as population 2.
                if let ProjectionKind::Conv2d { .. } = p3.kind {
                    let spec_try = NetworkSpec {
                        input_size,
                        populations: populations.clone(),
                        projections: vec![p3.clone()],
                    };
                    if Network::new(spec_try).is_ok() {
                        projections.push(p3);
                    }
                }
                projections.push(dense(&mut g, 1, 3, s1.0 * s1.1 * s1.2, n_out));
            }
        }
    }
    NetworkSpec {
        input_size,
        populations,
        projections,
    }
}

fn frames(seed: u64, n_in: usize, timesteps: usize) -> Vec<f32> {
    let mut g = Lcg(seed ^ 0xf00d);
    (0..n_in * timesteps)
        .map(|_| [0.0, 0.0, 0.0, 1.0, 2.0, 3.0][g.range(0, 5)])
        .collect()
}

/// R4.10: whether input dropout keeps the value of input `i` at timestep `t`.
fn kept_input(cfg: &RunConfig, sample: u32, t: usize, i: usize) -> bool {
    cfg.input_dropout <= 0.0
        || (uniform(cfg.seed, sample, t as u32, 0, i as u32, 3) as f64) >= cfg.input_dropout
}

/// Straightforward implementation of docs/semantics.md (R3-R7), independent of the
/// engine's data structures: every neuron every forward step, the settling populations
/// of R4.7 as explicit sets, the neurons reached by a delivery as explicit flags.
fn oracle(
    net: &Network,
    frames: &[f32],
    timesteps: usize,
    label: Option<usize>,
    sample: u32,
    cfg: &RunConfig,
) -> SampleResult {
    let spec = net.spec();
    let np = spec.populations.len();
    let n_in = spec.input_size;
    let mut offset = vec![0usize];
    for p in &spec.populations {
        offset.push(offset.last().unwrap() + p.size);
    }
    let n = offset[np];
    let pop_of = |q: usize| (0..np).find(|&p| q < offset[p + 1]).unwrap();
    let th: Vec<f32> = (0..n)
        .map(|q| {
            let p = &spec.populations[pop_of(q)];
            p.threshold[if p.threshold.len() == 1 {
                0
            } else {
                q - offset[pop_of(q)]
            }]
        })
        .collect();
    let beta: Vec<f32> = (0..n)
        .map(|q| {
            let p = &spec.populations[pop_of(q)];
            p.beta[if p.beta.len() == 1 {
                0
            } else {
                q - offset[pop_of(q)]
            }]
        })
        .collect();
    let bias: Vec<f32> = (0..n)
        .map(|q| {
            let p = &spec.populations[pop_of(q)];
            p.bias[if p.bias.len() == 1 {
                0
            } else {
                q - offset[pop_of(q)]
            }]
        })
        .collect();
    let alpha: Vec<f32> = (0..n)
        .map(|q| {
            let p = &spec.populations[pop_of(q)];
            p.alpha[if p.alpha.len() == 1 {
                0
            } else {
                q - offset[pop_of(q)]
            }]
        })
        .collect();
    // R4.12
    let synaptic: Vec<bool> = spec
        .populations
        .iter()
        .map(|p| p.alpha.iter().any(|&a| a != 0.0))
        .collect();
    // R1.6
    let settling: Vec<bool> = spec
        .populations
        .iter()
        .zip(&synaptic)
        .map(|(p, &syn)| p.reset != ResetMode::Zero || p.bias.iter().any(|&b| b != 0.0) || syn)
        .collect();
    let drop: Vec<f64> = cfg
        .refractory_dropout
        .clone()
        .unwrap_or_else(|| vec![0.0; np]);
    let outgoing: Vec<Vec<usize>> = (0..=np)
        .map(|s| {
            (0..spec.projections.len())
                .filter(|&pi| spec.projections[pi].source == s)
                .collect()
        })
        .collect();
    let n_out = spec.populations[np - 1].size;
    let mut r = SampleResult {
        timesteps,
        n_outputs: n_out,
        output_counts: vec![0; n_out],
        timestep_output_counts: vec![0; timesteps * n_out],
        prediction: -1,
        spikes: vec![0; np],
        spikes_total: 0,
        input_events: 0,
        synops: 0,
        synops_per_projection: vec![0; spec.projections.len()],
        forward_steps: 0,
        timestep_forward_steps: vec![0; timesteps],
        dropped_spikes: 0,
        queue_peak: 0,
        first_output_step: vec![-1; timesteps],
        first_output_class: vec![-1; timesteps],
        first_output_spikes: vec![-1; timesteps],
        first_output_synops: vec![-1; timesteps],
        first_correct_step: vec![-1; timesteps],
        first_correct_spikes: vec![-1; timesteps],
        first_correct_synops: vec![-1; timesteps],
        timestep_spikes: vec![0; timesteps],
        timestep_synops: vec![0; timesteps],
        decision_step: -1,
        decision_timestep: -1,
        decision_spikes: -1,
        decision_synops: -1,
    };
    let mut running = -1i64;
    let mut v = vec![0.0f32; n];
    let mut refr = vec![false; n];
    let mut vpre = vec![0.0f32; n];
    let mut mult = vec![0u32; n];
    let mut seq = vec![0u64; n];
    let mut seq_ctr = 0u64;
    let mut debt = vec![false; n];
    let mut syn_cur = vec![0.0f32; n]; // R4.12: S
                                       // The populations (0-based) that projections from population `s` (0 = input) target.
    let targets = |s: usize| -> Vec<usize> {
        spec.projections
            .iter()
            .filter(|pr| pr.source == s)
            .map(|pr| pr.target - 1)
            .collect()
    };
    for t in 0..timesteps {
        for q in 0..n {
            v[q] *= beta[q];
            refr[q] = false;
            vpre[q] = 0.0;
        }
        // R4.1 (3)
        let mut due = settling.clone();
        let mut cur = vec![0.0f32; n];
        // Neurons that a synapse reached in the deliveries of this step (R4.3.1).
        let mut reached = vec![false; n];
        let mut ts_spikes = 0i64;
        let mut ts_synops = 0i64;
        // R4.13: the pending input entries `(i, x_i(t), sequence number)`.
        let mut inputs: Vec<(usize, f32, u64)> = Vec::new();
        for i in 0..n_in {
            // R4.10: a dropped input value is 0 (no event, no current, no synops).
            let x = if kept_input(cfg, sample, t, i) {
                frames[t * n_in + i]
            } else {
                0.0
            };
            if x != 0.0 && !cfg.prioritize_input {
                r.input_events += 1;
                inputs.push((i, x, seq_ctr));
                seq_ctr += 1;
            } else if x != 0.0 {
                r.input_events += 1;
                for &pi in &outgoing[0] {
                    let syn = net.synapses(pi, i);
                    for &(q, w) in &syn {
                        cur[q] += x * w;
                        reached[q] = true;
                    }
                    r.synops_per_projection[pi] += syn.len() as i64;
                    ts_synops += syn.len() as i64;
                }
            }
        }
        // R4.7: the populations that settle in the next integrate phase.
        let mut settle: Vec<bool> = vec![false; np];
        if cfg.prioritize_input {
            for p in targets(0) {
                settle[p] = due[p];
            }
        }
        let mut k = 0u32;
        let mut k0: Option<u32> = None;
        let mut correct = false;
        loop {
            // R4.3.1: the bias of the settling populations joins their current; a
            // synaptic current decays and takes it at the settle (V then integrates S),
            // or is charged by it in any other step (R4.12); then V += I (unless
            // refractory) and the debts are paid.
            for q in 0..n {
                let p = pop_of(q);
                if settle[p] {
                    cur[q] += bias[q];
                }
                if synaptic[p] {
                    if settle[p] {
                        let decayed = alpha[q] * syn_cur[q];
                        syn_cur[q] = decayed + cur[q];
                        cur[q] = syn_cur[q];
                    } else {
                        syn_cur[q] += cur[q];
                    }
                }
                if !refr[q] {
                    v[q] += cur[q];
                    if settle[p] && debt[q] {
                        v[q] -= th[q];
                        debt[q] = false;
                    }
                }
                cur[q] = 0.0;
            }
            let integrated: Vec<bool> = (0..n).map(|q| reached[q] || settle[pop_of(q)]).collect();
            for p in 0..np {
                if settle[p] {
                    due[p] = false;
                }
            }
            settle = vec![false; np];
            reached = vec![false; n];
            let mut first_class = None;
            let mut hit = false;
            // R4.11: a spike that spike dropout drops is not enqueued (v_pre is still set).
            let kept = |q: usize| {
                cfg.spike_dropout <= 0.0
                    || (uniform(cfg.seed, sample, t as u32, k, q as u32, 4) as f64)
                        >= cfg.spike_dropout
            };
            for q in 0..n {
                // R4.3.2: only integrated neurons are checked.
                if integrated[q] && !refr[q] && v[q] > th[q] {
                    let p = pop_of(q);
                    vpre[q] = v[q];
                    // R4.8
                    match spec.populations[p].reset {
                        ResetMode::Zero => v[q] = 0.0,
                        ResetMode::Subtract => v[q] -= th[q],
                        ResetMode::SubtractDelayed => debt[q] = true,
                        ResetMode::None => {}
                    }
                    refr[q] = !(drop[p] > 0.0
                        && (uniform(cfg.seed, sample, t as u32, k, q as u32, 1) as f64) < drop[p]);
                    r.spikes[p] += 1;
                    ts_spikes += 1;
                    if p == np - 1 {
                        let c = q - offset[p];
                        r.output_counts[c] += 1;
                        r.timestep_output_counts[t * n_out + c] += 1;
                        if first_class.is_none() {
                            first_class = Some(c);
                        }
                        if label == Some(c) {
                            hit = true;
                        }
                    } else if !outgoing[p + 1].is_empty() && kept(q) {
                        if mult[q] == 0 {
                            seq[q] = seq_ctr;
                            seq_ctr += 1;
                        }
                        mult[q] += 1;
                    }
                }
            }
            if let (Some(c), None) = (first_class, k0) {
                k0 = Some(k);
                r.first_output_step[t] = k as i64;
                r.first_output_class[t] = c as i64;
                r.first_output_spikes[t] = ts_spikes;
                r.first_output_synops[t] = ts_synops;
            }
            if hit && !correct {
                correct = true;
                r.first_correct_step[t] = k as i64;
                r.first_correct_spikes[t] = ts_spikes;
                r.first_correct_synops[t] = ts_synops;
            }
            // R7.9: the argmax of the counts so far, re-evaluated after every fire phase.
            let best = r.output_counts.iter().copied().max().unwrap_or(0);
            let now = match r.output_counts.iter().position(|&c| c == best) {
                Some(i) if best > 0 => i as i64,
                _ => -1,
            };
            if now != running {
                running = now;
                r.decision_step = r.forward_steps + k as i64;
                r.decision_timestep = t as i64;
                r.decision_spikes = r.spikes.iter().sum();
                r.decision_synops = r.synops + ts_synops;
            }
            let pending: Vec<usize> = (0..n).filter(|&q| mult[q] > 0).collect();
            r.queue_peak = r.queue_peak.max((pending.len() + inputs.len()) as i64);
            let mut stop = false;
            if let (StopMode::FirstOutput { extra_steps }, Some(k0)) = (cfg.stop, k0) {
                stop |= k - k0 >= extra_steps;
            }
            if let Some(m) = cfg.max_steps {
                stop |= k + 1 >= m;
            }
            if stop {
                for &q in &pending {
                    r.dropped_spikes += mult[q] as i64;
                    mult[q] = 0;
                }
                inputs.clear(); // R4.13: dropped, not counted
                break;
            }
            if pending.is_empty() && inputs.is_empty() {
                // R4.3.4: a settle-only step for the lowest due population.
                match due.iter().position(|&d| d) {
                    Some(p) => {
                        settle[p] = true;
                        k += 1;
                        continue;
                    }
                    None => break,
                }
            }
            let f = cfg.forward_group_size;
            if !inputs.is_empty() {
                // R4.13: input entries (kind 0) and neurons (kind 1) in one order.
                let mut entries: Vec<(u32, usize)> = inputs
                    .iter()
                    .map(|e| (0, e.0))
                    .chain(pending.iter().map(|&q| (1, q)))
                    .collect();
                let sq = |&(kind, i): &(u32, usize)| match kind {
                    0 => inputs.iter().find(|e| e.0 == i).unwrap().2,
                    _ => seq[i],
                };
                match cfg.scheduler {
                    Scheduler::Layered => entries.retain(|e| e.0 == 0),
                    Scheduler::Fifo => {
                        entries.sort_by_key(sq);
                        entries.truncate(f);
                    }
                    Scheduler::Random => {
                        let stream = |kind| if kind == 0 { 5 } else { 0 };
                        entries.sort_by_key(|&(kind, i)| {
                            (
                                hash(cfg.seed, sample, t as u32, k, i as u32, stream(kind)),
                                kind,
                                i,
                            )
                        });
                        entries.truncate(f);
                    }
                    Scheduler::Momentum { .. } => unreachable!("refused (R4.13)"),
                }
                let mut group_in: Vec<usize> =
                    entries.iter().filter(|e| e.0 == 0).map(|e| e.1).collect();
                group_in.sort_unstable();
                for i in group_in {
                    let pos = inputs.iter().position(|e| e.0 == i).unwrap();
                    let (_, x, _) = inputs.remove(pos);
                    for d in targets(0) {
                        settle[d] = due[d];
                    }
                    for &pi in &outgoing[0] {
                        let syn = net.synapses(pi, i);
                        for &(q, w) in &syn {
                            cur[q] += x * w;
                            reached[q] = true;
                        }
                        r.synops_per_projection[pi] += syn.len() as i64;
                        ts_synops += syn.len() as i64;
                    }
                }
                for j in entries.iter().filter(|e| e.0 == 1).map(|e| e.1) {
                    let m = std::mem::take(&mut mult[j]);
                    let p = pop_of(j);
                    for d in targets(p + 1) {
                        settle[d] = due[d];
                    }
                    for &pi in &outgoing[p + 1] {
                        let syn = net.synapses(pi, j - offset[p]);
                        for &(q, w) in &syn {
                            cur[q] += m as f32 * w;
                            reached[q] = true;
                        }
                        r.synops_per_projection[pi] += syn.len() as i64;
                        ts_synops += syn.len() as i64;
                    }
                }
                k += 1;
                continue;
            }
            let group: Vec<usize> = match cfg.scheduler {
                Scheduler::Layered => {
                    let low = pending.iter().map(|&q| pop_of(q)).min().unwrap();
                    pending.into_iter().filter(|&q| pop_of(q) == low).collect()
                }
                Scheduler::Fifo => {
                    let mut p = pending;
                    p.sort_by_key(|&q| seq[q]);
                    p.truncate(f);
                    p
                }
                Scheduler::Random => {
                    let mut p = pending;
                    p.sort_by_key(|&q| (hash(cfg.seed, sample, t as u32, k, q as u32, 0), q));
                    p.truncate(f);
                    p
                }
                Scheduler::Momentum { jitter } => {
                    let key = |q: usize| {
                        let ju = jitter * uniform(cfg.seed, sample, t as u32, k, q as u32, 2);
                        vpre[q] + ju
                    };
                    let mut p = pending;
                    p.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
                    p.truncate(f);
                    p
                }
            };
            for j in group {
                let m = std::mem::take(&mut mult[j]);
                let p = pop_of(j);
                for d in targets(p + 1) {
                    settle[d] = due[d];
                }
                for &pi in &outgoing[p + 1] {
                    let syn = net.synapses(pi, j - offset[p]);
                    for &(q, w) in &syn {
                        cur[q] += m as f32 * w;
                        reached[q] = true;
                    }
                    r.synops_per_projection[pi] += syn.len() as i64;
                    ts_synops += syn.len() as i64;
                }
            }
            k += 1;
        }
        r.timestep_forward_steps[t] = k as i64 + 1;
        r.forward_steps += k as i64 + 1;
        r.synops += ts_synops;
        r.timestep_spikes[t] = ts_spikes;
        r.timestep_synops[t] = ts_synops;
    }
    r.spikes_total = r.spikes.iter().sum();
    let best = r.output_counts.iter().copied().max().unwrap_or(0);
    if best > 0 {
        r.prediction = r.output_counts.iter().position(|&c| c == best).unwrap() as i64;
    }
    r
}

fn pools() -> &'static (rayon::ThreadPool, rayon::ThreadPool) {
    static POOLS: OnceLock<(rayon::ThreadPool, rayon::ThreadPool)> = OnceLock::new();
    POOLS.get_or_init(|| {
        let mk = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .expect("thread pool")
        };
        (mk(1), mk(3))
    })
}

fn scheduler_of(i: u8, jitter: f32) -> Scheduler {
    match i % 5 {
        0 => Scheduler::Layered,
        1 => Scheduler::Fifo,
        2 => Scheduler::Random,
        3 => Scheduler::Momentum { jitter: 0.0 },
        _ => Scheduler::Momentum { jitter },
    }
}

fn to_sparse(frames: &[f32], n_in: usize) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
    // Split every value in two events (and add explicit zeros) to exercise R2.2.
    let (mut t, mut idx, mut val) = (Vec::new(), Vec::new(), Vec::new());
    for (pos, &x) in frames.iter().enumerate().rev() {
        let (ti, i) = ((pos / n_in) as u32, (pos % n_in) as u32);
        if x != 0.0 {
            t.extend([ti, ti]);
            idx.extend([i, i]);
            val.extend([x - 1.0, 1.0]);
        } else if pos % 3 == 0 {
            t.push(ti);
            idx.push(i);
            val.push(0.0);
        }
    }
    (t, idx, val)
}

#[derive(Debug, Clone)]
struct Case {
    arch: u8,
    /// Biases and reset modes (SPEC_VERSION 2).
    v2: bool,
    net_seed: u64,
    skips: bool,
    timesteps: usize,
    sched: u8,
    f: usize,
    stop: u8,
    max_steps: Option<u32>,
    dropout: bool,
    seed: u64,
    jitter: f32,
    batch: usize,
    /// R4.13: non-prioritised input (not drawn with `momentum`).
    npi: bool,
    /// R4.11: spike dropout 0.4 (else 0).
    spike_dropout: bool,
    /// R4.10: input dropout 0.3 (else 0).
    input_dropout: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (0u8..4, any::<u64>(), any::<bool>(), 1usize..6),
        (0u8..5, 1usize..6, 0u8..4, prop::option::of(1u32..6)),
        (prop::bool::weighted(0.3), any::<u64>(), 0u8..4, 1usize..5),
        any::<bool>(),
        any::<bool>(),
        (prop::bool::weighted(0.3), prop::bool::weighted(0.25)),
    )
        .prop_map(
            |(
                (arch, net_seed, skips, timesteps),
                (sched, f, stop, max_steps),
                (dropout, seed, j, batch),
                v2,
                npi,
                (spike_dropout, input_dropout),
            )| Case {
                arch,
                v2,
                net_seed,
                skips,
                timesteps,
                sched,
                f,
                stop,
                max_steps,
                dropout,
                seed,
                jitter: j as f32 * 0.25,
                batch,
                npi: npi && sched % 5 < 3,
                spike_dropout,
                input_dropout,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn engine_properties(c in case()) {
        let spec = build(c.arch, c.net_seed, c.skips, c.v2);
        let net = Network::new(spec.clone()).expect("generated network is valid");
        let np = net.n_populations();
        // R4.6: dropout only where the reset is zero.
        let dropout: Vec<f64> = spec
            .populations
            .iter()
            .map(|p| if p.reset == ResetMode::Zero { 0.5 } else { 0.0 })
            .collect();
        let n_in = net.input_size();
        let scheduler = scheduler_of(c.sched, c.jitter);
        let stop = match c.stop {
            0 | 1 => StopMode::Drain,
            s => StopMode::FirstOutput { extra_steps: (s - 2) as u32 },
        };
        let cfg = RunConfig {
            scheduler,
            forward_group_size: c.f,
            stop,
            max_steps: c.max_steps,
            seed: c.seed,
            refractory_dropout: if c.dropout { Some(dropout) } else { None },
            input_dropout: if c.input_dropout { 0.3 } else { 0.0 },
            spike_dropout: if c.spike_dropout { 0.4 } else { 0.0 },
            prioritize_input: !c.npi,
        };
        let frame_sets: Vec<Vec<f32>> =
            (0..c.batch).map(|b| frames(c.net_seed ^ (b as u64 * 7919), n_in, c.timesteps)).collect();
        let inputs: Vec<SampleInput> = frame_sets
            .iter()
            .map(|f| SampleInput::Dense { frames: f, timesteps: c.timesteps })
            .collect();
        let ids: Vec<u64> = (0..c.batch as u64).map(|i| i * 3 + 1).collect();
        let labels: Vec<Option<usize>> =
            (0..c.batch).map(|b| if b % 2 == 0 { Some(b % net.n_outputs()) } else { None }).collect();
        let cancel = AtomicBool::new(false);
        let (p1, p3) = pools();
        let b1 = p1.install(|| run_batch(&net, &inputs, Some(&labels), &ids, &cfg, &cancel)).unwrap();
        let b3 = p3.install(|| run_batch(&net, &inputs, Some(&labels), &ids, &cfg, &cancel)).unwrap();
        prop_assert_eq!(&b1, &b3);
        let widest = spec.populations.iter().map(|p| p.size).max().unwrap();
        for b in 0..c.batch {
            let r = &b1[b];
            let single = run_sample(&net, &inputs[b], labels[b], ids[b], &cfg).unwrap();
            prop_assert_eq!(&single, r);
            prop_assert_eq!(&run_sample(&net, &inputs[b], labels[b], ids[b], &cfg).unwrap(), r);
            let want = oracle(&net, &frame_sets[b], c.timesteps, labels[b], ids[b] as u32, &cfg);
            prop_assert_eq!(r, &want);
            // Dense and sparse forms agree (R2.2).
            let (t, idx, val) = to_sparse(&frame_sets[b], n_in);
            let sparse = SampleInput::Sparse { t: &t, index: &idx, value: &val, timesteps: c.timesteps };
            prop_assert_eq!(&run_sample(&net, &sparse, labels[b], ids[b], &cfg).unwrap(), r);
            // Counter invariants (R7).
            prop_assert_eq!(r.synops, r.synops_per_projection.iter().sum::<i64>());
            prop_assert_eq!(r.spikes_total, r.spikes.iter().sum::<i64>());
            prop_assert_eq!(r.forward_steps, r.timestep_forward_steps.iter().sum::<i64>());
            prop_assert!(r.forward_steps >= c.timesteps as i64);
            prop_assert!(r.timestep_forward_steps.iter().all(|&k| k >= 1));
            if let Some(m) = c.max_steps {
                prop_assert!(r.timestep_forward_steps.iter().all(|&k| k <= m as i64));
            }
            prop_assert_eq!(
                r.output_counts.iter().sum::<i64>(),
                r.timestep_output_counts.iter().sum::<i64>()
            );
            prop_assert_eq!(r.spikes[np - 1], r.output_counts.iter().sum::<i64>());
            let events = (0..c.timesteps * n_in)
                .filter(|&j| frame_sets[b][j] != 0.0 && kept_input(&cfg, ids[b] as u32, j / n_in, j % n_in))
                .count() as i64;
            prop_assert_eq!(r.input_events, events);
            if !c.dropout {
                for (p, pop) in spec.populations.iter().enumerate() {
                    prop_assert!(r.spikes[p] <= (pop.size * c.timesteps) as i64);
                }
                // R4.13: an input entry is a pending entry too.
                let entries = net.n_neurons() + if c.npi { n_in } else { 0 };
                prop_assert!(r.queue_peak <= entries as i64);
            }
            if stop == StopMode::Drain && c.max_steps.is_none() {
                prop_assert_eq!(r.dropped_spikes, 0);
            }
            for t in 0..c.timesteps {
                let k0 = r.first_output_step[t];
                prop_assert_eq!(k0 >= 0, r.timestep_output_counts[t * net.n_outputs()..(t + 1) * net.n_outputs()].iter().any(|&x| x > 0));
                if r.first_correct_step[t] >= 0 {
                    prop_assert!(r.first_correct_step[t] >= k0);
                }
            }
            // R4.5 layered equivalence: no skips, no dropout (the draws of R4.11 depend
            // on the forward step), drain.
            if !c.skips && !c.dropout && !c.spike_dropout {
                let mut l = cfg.clone();
                l.scheduler = Scheduler::Layered;
                l.stop = StopMode::Drain;
                l.max_steps = None;
                let layered = run_sample(&net, &inputs[b], labels[b], ids[b], &l).unwrap();
                let mut other = l.clone();
                other.scheduler = scheduler_of(c.sched.max(1), c.jitter);
                // R4.13: F also takes all the input entries of a frame at once.
                let width = if c.npi { widest.max(n_in) } else { widest };
                other.forward_group_size = width + c.f - 1;
                let o = run_sample(&net, &inputs[b], labels[b], ids[b], &other).unwrap();
                prop_assert_eq!(&o.spikes, &layered.spikes);
                prop_assert_eq!(&o.timestep_output_counts, &layered.timestep_output_counts);
                prop_assert_eq!(&o.synops_per_projection, &layered.synops_per_projection);
                prop_assert_eq!(&o.timestep_forward_steps, &layered.timestep_forward_steps);
                if c.npi {
                    // R4.13: under layered the spikes of prioritised input, each timestep
                    // one forward step longer when its frame has a non-zero value or a
                    // population that the input projects to settles (its settle moves
                    // from step 0 to a settle-only step).
                    let mut prio = l.clone();
                    prio.prioritize_input = true;
                    let p = run_sample(&net, &inputs[b], labels[b], ids[b], &prio).unwrap();
                    prop_assert_eq!(&p.spikes, &layered.spikes);
                    prop_assert_eq!(&p.timestep_output_counts, &layered.timestep_output_counts);
                    prop_assert_eq!(&p.synops_per_projection, &layered.synops_per_projection);
                    // R1.6: a bias, a reset other than zero or a synaptic current.
                    let input_settles = spec.projections.iter().filter(|pr| pr.source == 0).any(|pr| {
                        let p = &spec.populations[pr.target - 1];
                        p.reset != ResetMode::Zero
                            || p.bias.iter().any(|&x| x != 0.0)
                            || p.alpha.iter().any(|&x| x != 0.0)
                    });
                    for t in 0..c.timesteps {
                        // R4.10: a dropped value counts as 0.
                        let silent = (0..n_in).all(|i| {
                            frame_sets[b][t * n_in + i] == 0.0 || !kept_input(&cfg, ids[b] as u32, t, i)
                        });
                        let longer = layered.timestep_forward_steps[t] - p.timestep_forward_steps[t];
                        prop_assert_eq!(longer, i64::from(!silent || input_settles), "t = {}", t);
                    }
                }
            }
        }
    }

    /// Fan-outs reported by `Network::fan_out` equal the synapse lists (R1.3).
    #[test]
    fn fan_out_matches_synapses(arch in 0u8..4, seed in any::<u64>(), skips in any::<bool>()) {
        let net = Network::new(build(arch, seed, skips, false)).unwrap();
        let spec = net.spec();
        for s in 0..=net.n_populations() {
            let size = if s == 0 { spec.input_size } else { spec.populations[s - 1].size };
            let projs: Vec<usize> =
                (0..spec.projections.len()).filter(|&pi| spec.projections[pi].source == s).collect();
            for j in 0..size {
                let fo = net.fan_out(s, j);
                prop_assert_eq!(fo.len(), projs.len());
                for (f, &pi) in fo.iter().zip(&projs) {
                    let syn = net.synapses(pi, j);
                    prop_assert_eq!(*f, syn.len() as u64);
                    // Targets are distinct and inside the target population.
                    let mut qs: Vec<usize> = syn.iter().map(|x| x.0).collect();
                    qs.sort_unstable();
                    qs.dedup();
                    prop_assert_eq!(qs.len(), syn.len());
                    let tgt = spec.projections[pi].target;
                    let lo = net.population_offset(tgt).unwrap();
                    prop_assert!(qs.iter().all(|&q| q >= lo && q < lo + spec.populations[tgt - 1].size));
                }
            }
        }
    }
}
