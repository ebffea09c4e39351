//! Criterion benchmarks of the Rust engine on named workloads (`cargo bench --bench engine`).
//!
//! # Benchmark ids
//!
//! - `dense/{density}/{scheduler}/F{f}`, density `5pct`, `10pct`, `30pct`;
//! - `conv/{scheduler}/F{f}`;
//! - `dense_settling/10pct/{scheduler}/F{f}` (SPEC_VERSION 2: biases and reset
//!   `subtract`);
//! - `dense_recurrent/10pct/{scheduler}/F{f}` (SPEC_VERSION 2: recurrent projections);
//! - `dense_synaptic/10pct/{scheduler}/F{f}` (SPEC_VERSION 2: synaptic currents, R4.12);
//!
//! with scheduler `layered`, `fifo`, `random`, `momentum` (jitter 0) and forward group
//! size F in {1, 8, 64}. `layered` ignores F (R5.1), so its three ids per workload run the
//! same work: their spread shows the measurement noise. Filter as usual, e.g.
//! `cargo bench --bench engine -- conv/momentum` or `-- 'dense/10pct/.*/F8'`.
//!
//! One iteration runs a fixed batch (16 dense samples, 32 conv samples) with `run_batch`
//! in a dedicated one-thread rayon pool, i.e. single-threaded, as the Python binding runs
//! a batch with `threads=1` (one reused workspace, inputs validated and merged first).
//! Stop mode drain, no `max_steps`, seed 1, sample ids `0..batch`.
//!
//! # Workloads
//!
//! - `dense`: 784-512-512-10, built in Rust (the model is 2.7 MB of float32 weights, too
//!   large to check in as a model file): weights from a seeded LCG, uniform in
//!   `[-0.044, 0.05)` for every layer, threshold 1.0, beta 0.9. Input: rate-coded, each
//!   pixel on (value 1) with probability 5 %, 10 % or 30 % per timestep, 20 timesteps;
//!   the same uniform draws for every density, so the on-pixels of 5 % are a subset of
//!   those of 10 %, and the 10 % input is the one of the earlier single-workload bench.
//!   The weight range was tuned at 10 % (the activity is very sensitive to the mean
//!   weight): about 78 / 80 / 1.6 spikes per timestep in the three populations (~15 %).
//!   The network is the same at every density, so activity follows the input: at 5 %
//!   the second layer spikes about 15 times per timestep and the output almost never; at
//!   30 % about half of the hidden neurons spike every timestep.
//! - `dense_settling`: the `dense` network and 10 % input, with every population
//!   settling (R1.6): bias -0.02 on every neuron and reset `subtract` (R4.8). The bias
//!   compensates the charge that `subtract` keeps: about 79 / 78 / 1.4 spikes per
//!   timestep (`dense/10pct`: 79 / 83 / 1.6). Its cost per synop against `dense/10pct`
//!   is the price of settling (a pass over each population per timestep, the reset).
//! - `dense_recurrent`: the `dense` network and 10 % input plus a recurrent dense
//!   projection from each hidden population to itself (512 x 512, R1.2), weights from
//!   the same LCG after the forward ones, uniform in `[-0.03, 0.03)`, so that the
//!   activity stays close to that of `dense/10pct`. Both hidden populations settle
//!   (R1.6); under `layered` their recurrent currents are carried to the next timestep,
//!   under the other schedulers delivered at once (R4.9). Its cost per synop against
//!   `dense/10pct` is the price of recurrence.
//! - `dense_synaptic`: the `dense` network and 10 % input with a synaptic current on
//!   every neuron (R4.12, alpha [`SYNAPTIC_ALPHA`] = 0.5) and every weight scaled by
//!   `1 - alpha` (exact in float32), so that a steady input charges the membranes as in
//!   `dense` (the synaptic current's gain is `1 / (1 - alpha)`). Every population
//!   settles (R1.6). Its cost per synop against `dense/10pct` is the price of the
//!   synaptic current (a pass over each population per timestep, and the charge of `S`
//!   by every later delivery).
//! - `conv`: 2x34x34 -> conv 8 (k3 s2) -> conv 16 (k3 s2 p1) -> conv 32 (k3 s2 p1) ->
//!   dense 10, threshold 1, beta 0.9, **loaded from `benches/models/conv.safetensors`**,
//!   a file written by the Python side (`asyncsnn.save`) with seeded weights by
//!   `python scripts/make_fixtures.py` (which also checks it for drift with `--check`);
//!   so the bench also exercises the Rust model-file reader. Input: N-MNIST-like events,
//!   generated here from a seeded LCG: per sample a "digit" of three random strokes (2 px
//!   wide) in a 21x21 box that moves along a triangular saccade path of 2 px per
//!   timestep; ON events (channel 0) where the shape newly covers a pixel, OFF events
//!   (channel 1) where it leaves one, each kept with probability 0.75, plus 3 noise
//!   events per timestep; 10 timesteps, about 3 % of the 2x34x34 inputs per timestep,
//!   spatially clustered along the moving edges. The weight means were tuned so that
//!   every layer spikes at a moderate rate (8-15 % of each conv layer per timestep, the
//!   output 1-2.5 times per timestep).
//!
//! # Throughputs
//!
//! Criterion reports one throughput per benchmark: here synaptic operations (R7.4) per
//! second, as `Throughput::Elements` ("elem/s" is synops/s). Samples/s and spikes/s are
//! not measured separately (that would double the run time): the work of an iteration is
//! deterministic, so before each selected benchmark the bench prints one line
//!
//! ```text
//! activity {id}: samples/iter N, spikes/sample S, synops/sample Y, forward steps/sample K | ...
//! ```
//!
//! and samples/s = N / t, spikes/s = N * S / t, synops/s = N * Y / t for criterion's time
//! per iteration t. `python benches/criterion_table.py LOG` turns the log of a run and
//! criterion's estimates (`target/criterion/**/new/estimates.json`, median time per
//! iteration) into the table of `docs/benchmarks.md`.
//!
//! # Instruction counts
//!
//! `ASYNCSNN_BENCH_ONCE={id}` skips criterion and runs the batch of benchmark `{id}`
//! `ASYNCSNN_BENCH_REPEAT` times (default 1), then prints its activity line; with
//! `ASYNCSNN_BENCH_INPUT_DROPOUT` / `ASYNCSNN_BENCH_SPIKE_DROPOUT` set, at that input or
//! spike dropout (R4.10, R4.11; 0 otherwise, as under criterion); with
//! `ASYNCSNN_BENCH_PRIORITIZE_INPUT=0`, with non-prioritised input (R4.13; not for the
//! momentum benchmarks, which refuse it). Under
//! `valgrind --tool=callgrind`, the difference between the instruction counts of repeat
//! 1 and repeat 0 is the cost of one iteration, independent of the machine's load (the
//! A/B comparisons of `docs/benchmarks.md`).
//!
//! # Run time
//!
//! Every benchmark: flat sampling, 10 samples, 1 s warm-up, 3 s measurement (a sample is
//! at least one iteration, so the slowest benchmarks run 10 iterations and a little
//! longer). 84 benchmarks: the run takes about 7 minutes on a loaded 2-core machine, plus
//! about 4 minutes for a fresh release build (fat LTO). The activity of every benchmark
//! is computed at setup (one batch each, a few seconds in all), also when a filter
//! leaves it out; only the selected ones print it.

use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use _engine::model_file::load_model_file;
use _engine::{
    run_batch, Network, NetworkSpec, PopulationSpec, ProjectionKind, ProjectionSpec, ResetMode,
    RunConfig, SampleInput, SampleResult, Scheduler, StopMode,
};
use criterion::{
    criterion_group, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput,
};

const SCHEDULERS: [Scheduler; 4] = [
    Scheduler::Layered,
    Scheduler::Fifo,
    Scheduler::Random,
    Scheduler::Momentum { jitter: 0.0 },
];
const GROUP_SIZES: [usize; 3] = [1, 8, 64];

const DENSE_SIZES: [usize; 4] = [784, 512, 512, 10];
const DENSE_TIMESTEPS: usize = 20;
const DENSE_BATCH: usize = 16;
const DENSE_W_LO: f32 = -0.044;
const DENSE_W_HI: f32 = 0.05;
/// (id, probability of an on-pixel per timestep).
const DENSITIES: [(&str, f32); 3] = [("5pct", 0.05), ("10pct", 0.1), ("30pct", 0.3)];
/// Bias of the `dense_settling` workload: with reset `subtract` the activity of the
/// 10 % input stays close to that of `dense/10pct`.
const SETTLING_BIAS: f32 = -0.02;

/// The synaptic decay of every neuron of the `dense_synaptic` workload (R4.12).
const SYNAPTIC_ALPHA: f32 = 0.5;
/// Weight range of the recurrent projections of the `dense_recurrent` workload.
const RECURRENT_W_LO: f32 = -0.03;
const RECURRENT_W_HI: f32 = 0.03;

const CONV_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/models/conv.safetensors"
);
const CONV_TIMESTEPS: usize = 10;
const CONV_BATCH: usize = 32;
/// Sensor side (N-MNIST: 34 x 34, 2 polarities).
const SIDE: usize = 34;
/// Side of the box the strokes are drawn in (with their 2x2 brush).
const BOX: usize = 21;
/// Displacement of the shape per timestep (x, y): three saccades of a triangle.
const SACCADE: [(i32, i32); CONV_TIMESTEPS] = [
    (2, 1),
    (2, 1),
    (2, 1),
    (2, 1),
    (-2, 1),
    (-2, 1),
    (-2, 1),
    (-1, -2),
    (-1, -2),
    (-1, -2),
];
/// Probability that an edge pixel emits its event in a timestep.
const KEEP: f32 = 0.75;
/// Background noise events per timestep.
const NOISE: usize = 3;

struct Lcg(u64);

impl Lcg {
    /// Uniform in [0, 1).
    fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

/// Sparse events of one sample (R2.2).
#[derive(Default)]
struct Events {
    t: Vec<u32>,
    index: Vec<u32>,
    value: Vec<f32>,
}

impl Events {
    fn push(&mut self, t: usize, index: usize) {
        self.t.push(t as u32);
        self.index.push(index as u32);
        self.value.push(1.0);
    }
}

/// A network and a batch of inputs; benchmark ids `{group}/{variant}/{scheduler}/F{f}`
/// (`{group}/{scheduler}/F{f}` without a variant).
struct Workload {
    group: &'static str,
    variant: Option<&'static str>,
    net: Network,
    samples: Vec<Events>,
    timesteps: usize,
}

/// The `dense` network; every neuron with bias `bias` and reset `reset` (R1.4, R4.8).
fn dense_network(bias: f32, reset: ResetMode) -> Network {
    dense_network_with(bias, reset, false)
}

/// The `dense` network; with `recurrent`, plus a recurrent dense projection from each
/// hidden population to itself (the `dense_recurrent` workload).
fn dense_network_with(bias: f32, reset: ResetMode, recurrent: bool) -> Network {
    let mut g = Lcg(0x5eed);
    let populations = DENSE_SIZES[1..]
        .iter()
        .map(|&size| PopulationSpec {
            size,
            threshold: vec![1.0],
            beta: vec![0.9],
            refractory_dropout: 0.0,
            bias: vec![bias],
            reset,
            alpha: vec![0.0],
        })
        .collect();
    let mut projections = (0..DENSE_SIZES.len() - 1)
        .map(|l| ProjectionSpec {
            source: l,
            target: l + 1,
            kind: ProjectionKind::Dense {
                weight: (0..DENSE_SIZES[l] * DENSE_SIZES[l + 1])
                    .map(|_| DENSE_W_LO + (DENSE_W_HI - DENSE_W_LO) * g.next_f32())
                    .collect(),
            },
        })
        .collect::<Vec<_>>();
    if recurrent {
        let hidden = &DENSE_SIZES[1..DENSE_SIZES.len() - 1];
        for (i, &n) in hidden.iter().enumerate() {
            let p = i + 1;
            projections.push(ProjectionSpec {
                source: p,
                target: p,
                kind: ProjectionKind::Dense {
                    weight: (0..n * n)
                        .map(|_| RECURRENT_W_LO + (RECURRENT_W_HI - RECURRENT_W_LO) * g.next_f32())
                        .collect(),
                },
            });
        }
    }
    Network::new(NetworkSpec {
        input_size: DENSE_SIZES[0],
        populations,
        projections,
    })
    .expect("valid benchmark network")
}

/// Rate-coded input: each pixel on with probability `density` per timestep.
fn rate_coded(density: f32) -> Vec<Events> {
    let mut g = Lcg(0xda7a);
    (0..DENSE_BATCH)
        .map(|_| {
            let mut ev = Events::default();
            for t in 0..DENSE_TIMESTEPS {
                for i in 0..DENSE_SIZES[0] {
                    if g.next_f32() < density {
                        ev.push(t, i);
                    }
                }
            }
            ev
        })
        .collect()
}

/// The conv network, as the Python side wrote it.
fn conv_network() -> Network {
    let file = load_model_file(CONV_MODEL)
        .unwrap_or_else(|e| panic!("{e}\n(regenerate it with `python scripts/make_fixtures.py`)"));
    assert_eq!(
        file.input_shape,
        [2, SIDE, SIDE],
        "{CONV_MODEL}: input shape"
    );
    assert_eq!(
        file.population_shapes,
        [vec![8, 16, 16], vec![16, 8, 8], vec![32, 4, 4], vec![10]],
        "{CONV_MODEL}: population shapes"
    );
    file.into_network().expect("valid conv model")
}

/// N-MNIST-like events of one sample: three random strokes moving along a saccade path;
/// ON where the shape arrives, OFF where it leaves (see the module doc).
fn saccade_events(g: &mut Lcg) -> Events {
    let mut shape = [[false; BOX]; BOX];
    for _ in 0..3 {
        let lim = (BOX - 2) as f32;
        let (x0, y0, x1, y1) = (
            lim * g.next_f32(),
            lim * g.next_f32(),
            lim * g.next_f32(),
            lim * g.next_f32(),
        );
        for s in 0..=64 {
            let a = s as f32 / 64.0;
            let x = (x0 + (x1 - x0) * a).round() as usize;
            let y = (y0 + (y1 - y0) * a).round() as usize;
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                shape[y + dy][x + dx] = true;
            }
        }
    }
    let covered = |(ox, oy): (i32, i32), y: usize, x: usize| {
        let (sy, sx) = (y as i32 - oy, x as i32 - ox);
        let inside = |v: i32| (0..BOX as i32).contains(&v);
        inside(sy) && inside(sx) && shape[sy as usize][sx as usize]
    };
    let mut ev = Events::default();
    let mut pos = (3, 3);
    for (t, &(vx, vy)) in SACCADE.iter().enumerate() {
        let next = (pos.0 + vx, pos.1 + vy);
        for y in 0..SIDE {
            for x in 0..SIDE {
                let channel = match (covered(pos, y, x), covered(next, y, x)) {
                    (false, true) => 0,
                    (true, false) => 1,
                    _ => continue,
                };
                if g.next_f32() < KEEP {
                    ev.push(t, (channel * SIDE + y) * SIDE + x);
                }
            }
        }
        for _ in 0..NOISE {
            let n = 2 * SIDE * SIDE;
            ev.push(t, ((g.next_f32() * n as f32) as usize).min(n - 1));
        }
        pos = next;
    }
    ev
}

fn config(scheduler: Scheduler, forward_group_size: usize) -> RunConfig {
    RunConfig {
        scheduler,
        forward_group_size,
        stop: StopMode::Drain,
        max_steps: None,
        seed: 1,
        refractory_dropout: None,
        input_dropout: 0.0,
        spike_dropout: 0.0,
        prioritize_input: true,
    }
}

/// Runs the whole batch on the current rayon pool.
fn run(w: &Workload, inputs: &[SampleInput], ids: &[u64], cfg: &RunConfig) -> Vec<SampleResult> {
    run_batch(&w.net, inputs, None, ids, cfg, &AtomicBool::new(false)).expect("run")
}

/// The activity line of one benchmark (see the module doc) and its synops per iteration.
fn activity(id: &str, w: &Workload, results: &[SampleResult]) -> (String, u64) {
    let n = results.len() as f64;
    let per_t = n * w.timesteps as f64;
    let sum = |f: &dyn Fn(&SampleResult) -> i64| results.iter().map(f).sum::<i64>() as f64;
    let spikes = sum(&|r| r.spikes_total);
    let synops = sum(&|r| r.synops);
    let steps = sum(&|r| r.forward_steps);
    let layers = (0..w.net.n_populations())
        .map(|p| format!("{:.1}", sum(&|r| r.spikes[p]) / per_t))
        .collect::<Vec<_>>()
        .join(" / ");
    let line = format!(
        "activity {id}: samples/iter {}, spikes/sample {:.1}, synops/sample {:.0}, \
         forward steps/sample {:.1} | per timestep: input events {:.1}, spikes by layer {layers}, \
         forward steps {:.1}",
        results.len(),
        spikes / n,
        synops / n,
        steps / n,
        sum(&|r| r.input_events) / per_t,
        steps / per_t,
    );
    (line, synops as u64)
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

/// The inputs of a workload's batch.
fn sample_inputs(w: &Workload) -> Vec<SampleInput<'_>> {
    w.samples
        .iter()
        .map(|e| SampleInput::Sparse {
            t: &e.t,
            index: &e.index,
            value: &e.value,
            timesteps: w.timesteps,
        })
        .collect()
}

/// The benchmark id of `w` under `scheduler` and F = `f` (see the module doc).
fn bench_id(w: &Workload, scheduler: Scheduler, f: usize) -> String {
    match w.variant {
        Some(v) => format!("{}/{v}/{}/F{f}", w.group, scheduler.name()),
        None => format!("{}/{}/F{f}", w.group, scheduler.name()),
    }
}

/// One benchmark per scheduler and F on `w`.
fn bench_workload(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    pool: &rayon::ThreadPool,
    w: &Workload,
) {
    let inputs = sample_inputs(w);
    let ids: Vec<u64> = (0..inputs.len() as u64).collect();
    for scheduler in SCHEDULERS {
        for f in GROUP_SIZES {
            let cfg = config(scheduler, f);
            let function = match w.variant {
                Some(v) => format!("{v}/{}", scheduler.name()),
                None => scheduler.name().to_string(),
            };
            let id = bench_id(w, scheduler, f);
            // Deterministic: every iteration does exactly this work.
            let (line, synops) = activity(&id, w, &pool.install(|| run(w, &inputs, &ids, &cfg)));
            group.throughput(Throughput::Elements(synops));
            let printed = Cell::new(false);
            let bench_id = BenchmarkId::new(function, format!("F{f}"));
            group.bench_function(bench_id, |b| {
                if !printed.replace(true) {
                    eprintln!("{line}");
                }
                b.iter(|| black_box(pool.install(|| run(w, &inputs, &ids, &cfg))))
            });
        }
    }
}

fn one_thread() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("rayon pool")
}

fn run_group(c: &mut Criterion, workloads: &[Workload]) {
    let pool = one_thread();
    let mut g = c.benchmark_group(workloads[0].group);
    configure(&mut g);
    for w in workloads {
        bench_workload(&mut g, &pool, w);
    }
    g.finish();
}

/// The three `dense` workloads (one network, one input per density).
fn dense_workloads() -> Vec<Workload> {
    let net = dense_network(0.0, ResetMode::Zero);
    DENSITIES
        .iter()
        .map(|&(variant, density)| Workload {
            group: "dense",
            variant: Some(variant),
            net: net.clone(),
            samples: rate_coded(density),
            timesteps: DENSE_TIMESTEPS,
        })
        .collect()
}

/// The `dense_settling` workload: the `dense` network at 10 %, every population settling
/// (bias [`SETTLING_BIAS`], reset `subtract`).
fn settling_workloads() -> Vec<Workload> {
    vec![Workload {
        group: "dense_settling",
        variant: Some("10pct"),
        net: dense_network(SETTLING_BIAS, ResetMode::Subtract),
        samples: rate_coded(0.1),
        timesteps: DENSE_TIMESTEPS,
    }]
}

/// The `dense_recurrent` workload: the `dense` network at 10 %, each hidden population
/// with a recurrent projection to itself.
fn recurrent_workloads() -> Vec<Workload> {
    vec![Workload {
        group: "dense_recurrent",
        variant: Some("10pct"),
        net: dense_network_with(0.0, ResetMode::Zero, true),
        samples: rate_coded(0.1),
        timesteps: DENSE_TIMESTEPS,
    }]
}

/// The `dense_synaptic` workload: the `dense` network at 10 %, every neuron with a
/// synaptic current of decay [`SYNAPTIC_ALPHA`] and its weights scaled by `1 - alpha`.
fn synaptic_workloads() -> Vec<Workload> {
    let mut spec = dense_network(0.0, ResetMode::Zero).spec().clone();
    for p in &mut spec.populations {
        p.alpha = vec![SYNAPTIC_ALPHA];
    }
    for pr in &mut spec.projections {
        if let ProjectionKind::Dense { weight } = &mut pr.kind {
            weight.iter_mut().for_each(|w| *w *= 1.0 - SYNAPTIC_ALPHA);
        }
    }
    vec![Workload {
        group: "dense_synaptic",
        variant: Some("10pct"),
        net: Network::new(spec).expect("valid network"),
        samples: rate_coded(0.1),
        timesteps: DENSE_TIMESTEPS,
    }]
}

/// The `conv` workload.
fn conv_workloads() -> Vec<Workload> {
    let mut g = Lcg(0xe7e7);
    vec![Workload {
        group: "conv",
        variant: None,
        net: conv_network(),
        samples: (0..CONV_BATCH).map(|_| saccade_events(&mut g)).collect(),
        timesteps: CONV_TIMESTEPS,
    }]
}

fn dense(c: &mut Criterion) {
    run_group(c, &dense_workloads());
}

fn conv(c: &mut Criterion) {
    run_group(c, &conv_workloads());
}

fn dense_settling(c: &mut Criterion) {
    run_group(c, &settling_workloads());
}

fn dense_recurrent(c: &mut Criterion) {
    run_group(c, &recurrent_workloads());
}

fn dense_synaptic(c: &mut Criterion) {
    run_group(c, &synaptic_workloads());
}

/// `ASYNCSNN_BENCH_ONCE=<benchmark id>`: no criterion; builds the workload of that one
/// benchmark and runs its batch `ASYNCSNN_BENCH_REPEAT` times (default 1), as one
/// iteration does, then prints its activity line. For instruction counts, which do not
/// depend on the load of the machine: the difference between `callgrind` runs with
/// repeat 1 and 0 is the cost of one iteration (see `docs/benchmarks.md`).
fn once(id: &str, repeat: usize) {
    let workloads = match id.split('/').next() {
        Some("dense") => dense_workloads(),
        Some("dense_settling") => settling_workloads(),
        Some("dense_recurrent") => recurrent_workloads(),
        Some("dense_synaptic") => synaptic_workloads(),
        Some("conv") => conv_workloads(),
        _ => panic!("unknown benchmark group in {id:?}"),
    };
    let pool = one_thread();
    for w in &workloads {
        let inputs = sample_inputs(w);
        let ids: Vec<u64> = (0..inputs.len() as u64).collect();
        for scheduler in SCHEDULERS {
            for f in GROUP_SIZES {
                if bench_id(w, scheduler, f) != id {
                    continue;
                }
                let mut cfg = config(scheduler, f);
                let dropout = |v: &str| std::env::var(v).map_or(0.0, |p| p.parse().expect(v));
                cfg.input_dropout = dropout("ASYNCSNN_BENCH_INPUT_DROPOUT");
                cfg.spike_dropout = dropout("ASYNCSNN_BENCH_SPIKE_DROPOUT");
                // R4.13 (not with momentum): `ASYNCSNN_BENCH_PRIORITIZE_INPUT=0`.
                cfg.prioritize_input =
                    std::env::var("ASYNCSNN_BENCH_PRIORITIZE_INPUT").map_or(true, |v| v != "0");
                let mut results = Vec::new();
                for _ in 0..repeat {
                    results = black_box(pool.install(|| run(w, &inputs, &ids, &cfg)));
                }
                if !results.is_empty() {
                    eprintln!("{}", activity(id, w, &results).0);
                }
                return;
            }
        }
    }
    panic!("no benchmark {id:?}");
}

criterion_group!(
    benches,
    dense,
    conv,
    dense_settling,
    dense_recurrent,
    dense_synaptic
);

fn main() {
    if let Ok(id) = std::env::var("ASYNCSNN_BENCH_ONCE") {
        let repeat = std::env::var("ASYNCSNN_BENCH_REPEAT")
            .map_or(1, |r| r.parse().expect("ASYNCSNN_BENCH_REPEAT: an integer"));
        once(&id, repeat);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
