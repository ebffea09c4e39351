//! Helpers shared by the engine's integration tests (`tests/engine_*.rs`, which include
//! this file alone: `#[path = "support/nets.rs"] mod nets;`): small network builders, a
//! run shortcut, the schedulers, a deterministic generator, and the synapses of a conv
//! projection straight from R1.2.
#![allow(dead_code)] // each test crate uses a part

use std::sync::atomic::AtomicBool;

use _engine::engine::{trace_batch, EventKind, TraceEvent};
use _engine::{
    run_sample, Network, NetworkSpec, PopulationSpec, ProjectionKind, ProjectionSpec, ResetMode,
    RunConfig, SampleInput, SampleResult, Scheduler, StopMode,
};

pub fn pop(size: usize, th: f32, beta: f32) -> PopulationSpec {
    PopulationSpec {
        size,
        threshold: vec![th],
        beta: vec![beta],
        refractory_dropout: 0.0,
        bias: vec![0.0],
        reset: ResetMode::Zero,
        alpha: vec![0.0],
    }
}

/// A population with a scalar bias and a reset mode (R1.4, R4.8).
pub fn pop_v2(size: usize, th: f32, beta: f32, bias: f32, reset: ResetMode) -> PopulationSpec {
    PopulationSpec {
        bias: vec![bias],
        reset,
        ..pop(size, th, beta)
    }
}

pub fn dense(source: usize, target: usize, weight: Vec<f32>) -> ProjectionSpec {
    ProjectionSpec {
        source,
        target,
        kind: ProjectionKind::Dense { weight },
    }
}

#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    source: usize,
    target: usize,
    weight: Vec<f32>,
    c_in: usize,
    (in_h, in_w): (usize, usize),
    c_out: usize,
    (kh, kw): (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> ProjectionSpec {
    ProjectionSpec {
        source,
        target,
        kind: ProjectionKind::Conv2d {
            weight,
            c_in,
            in_h,
            in_w,
            c_out,
            kh,
            kw,
            stride,
            padding,
        },
    }
}

pub fn cfg(scheduler: Scheduler, f: usize) -> RunConfig {
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

pub fn net(input_size: usize, pops: Vec<PopulationSpec>, projs: Vec<ProjectionSpec>) -> Network {
    Network::new(NetworkSpec {
        input_size,
        populations: pops,
        projections: projs,
    })
    .expect("valid network")
}

pub fn run_dense(
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

pub const ALL: [Scheduler; 5] = [
    Scheduler::Layered,
    Scheduler::Fifo,
    Scheduler::Random,
    Scheduler::Momentum { jitter: 0.0 },
    Scheduler::Momentum { jitter: 0.5 },
];

/// Tiny deterministic generator for the tests.
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    pub fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

/// Brute-force synapse list of a conv projection straight from R1.2.
#[allow(clippy::too_many_arguments)]
pub fn conv_brute(
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    s: (usize, usize),
    pd: (usize, usize),
    src: usize,
) -> Vec<(usize, usize)> {
    let oh = (h + 2 * pd.0 - kh) / s.0 + 1;
    let ow = (w + 2 * pd.1 - kw) / s.1 + 1;
    let (c, y, x) = (src / (h * w), (src % (h * w)) / w, src % w);
    let mut out = Vec::new();
    for o in 0..c_out {
        for i in 0..oh {
            for j in 0..ow {
                let ky = y as i64 + pd.0 as i64 - (i * s.0) as i64;
                let kx = x as i64 + pd.1 as i64 - (j * s.1) as i64;
                if (0..kh as i64).contains(&ky) && (0..kw as i64).contains(&kx) {
                    let widx = ((o * c_in + c) * kh + ky as usize) * kw + kx as usize;
                    out.push(((o * oh + i) * ow + j, widx));
                }
            }
        }
    }
    out.sort_unstable();
    out
}

/// Consistency of the sums of a result (R7).
pub trait CheckSums {
    /// The totals equal the sums of their parts.
    fn fan_out_check(&self);
}

impl CheckSums for SampleResult {
    fn fan_out_check(&self) {
        assert_eq!(self.synops, self.synops_per_projection.iter().sum::<i64>());
        assert_eq!(self.spikes_total, self.spikes.iter().sum::<i64>());
        assert_eq!(
            self.forward_steps,
            self.timestep_forward_steps.iter().sum::<i64>()
        );
        assert_eq!(
            self.output_counts.iter().sum::<i64>(),
            self.timestep_output_counts.iter().sum::<i64>()
        );
    }
}

/// A population with a synaptic current (R4.12): decay `alpha` (len 1 or `size`), bias 0,
/// reset `reset`.
pub fn pop_syn(
    size: usize,
    th: f32,
    beta: f32,
    alpha: Vec<f32>,
    reset: ResetMode,
) -> PopulationSpec {
    PopulationSpec {
        alpha,
        reset,
        ..pop(size, th, beta)
    }
}

/// The result and the trace (R7.10) of one dense sample.
pub fn traced(
    n: &Network,
    frames: &[f32],
    timesteps: usize,
    config: &RunConfig,
) -> (SampleResult, Vec<TraceEvent>) {
    let inputs = [SampleInput::Dense { frames, timesteps }];
    let (mut results, mut traces) =
        trace_batch(n, &inputs, None, None, config, &AtomicBool::new(false)).expect("trace");
    (results.remove(0), traces.remove(0))
}

/// The events of one kind as `(t, k, population, neuron, value)`.
pub fn events(trace: &[TraceEvent], kind: EventKind) -> Vec<(u32, u32, u32, u32, f64)> {
    trace
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| (e.timestep, e.step, e.population, e.neuron, e.value))
        .collect()
}
