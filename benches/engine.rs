//! Criterion benchmarks of the event loop on a dense 784-512-512-10 network.
//!
//! Network: weights drawn from a seeded LCG, uniform in `[-0.044, 0.05)` for every
//! layer (dense, row-major `[n_target, n_source]`), threshold 1.0, beta 0.9. Input:
//! rate-coded frames, each input pixel on (value 1.0) with probability 10% per
//! timestep, 20 timesteps. The weight range was tuned (the activity is very sensitive to
//! the mean weight) so that every layer spikes at a moderate rate: about 79 of 512
//! first-layer and 83 of 512 second-layer neurons spike per timestep (~15%), the outputs
//! about 1.6 times per timestep, ~22 forward steps per timestep with F = 8 and about
//! 1.63 M synops per sample; the setup prints this summary once per scheduler. So the
//! benchmark exercises all three projections and the scheduler. Throughput is reported
//! as synops (`Throughput::Elements`), so criterion prints synops/s as "elem/s".
//!
//! One batch = 16 samples run with `run_sample` in a loop on one thread.

use std::hint::black_box;
use std::time::Duration;

use _engine::{
    run_sample, Network, NetworkSpec, PopulationSpec, ProjectionKind, ProjectionSpec, RunConfig,
    SampleInput, Scheduler, StopMode,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SIZES: [usize; 4] = [784, 512, 512, 10];
const TIMESTEPS: usize = 20;
const BATCH: usize = 16;
const W_LO: f32 = -0.044;
const W_HI: f32 = 0.05;

struct Lcg(u64);

impl Lcg {
    fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

fn network() -> Network {
    let mut g = Lcg(0x5eed);
    let populations = SIZES[1..]
        .iter()
        .map(|&size| PopulationSpec {
            size,
            threshold: vec![1.0],
            beta: vec![0.9],
            refractory_dropout: 0.0,
        })
        .collect();
    let projections = (0..SIZES.len() - 1)
        .map(|l| ProjectionSpec {
            source: l,
            target: l + 1,
            kind: ProjectionKind::Dense {
                weight: (0..SIZES[l] * SIZES[l + 1])
                    .map(|_| W_LO + (W_HI - W_LO) * g.next_f32())
                    .collect(),
            },
        })
        .collect();
    Network::new(NetworkSpec {
        input_size: SIZES[0],
        populations,
        projections,
    })
    .expect("valid benchmark network")
}

/// Sparse rate-coded input: `(t, index, value)` events at ~10% density.
fn inputs() -> Vec<(Vec<u32>, Vec<u32>, Vec<f32>)> {
    let mut g = Lcg(0xda7a);
    (0..BATCH)
        .map(|_| {
            let (mut t, mut idx, mut val) = (Vec::new(), Vec::new(), Vec::new());
            for ts in 0..TIMESTEPS {
                for i in 0..SIZES[0] {
                    if g.next_f32() < 0.1 {
                        t.push(ts as u32);
                        idx.push(i as u32);
                        val.push(1.0);
                    }
                }
            }
            (t, idx, val)
        })
        .collect()
}

fn config(scheduler: Scheduler) -> RunConfig {
    RunConfig {
        scheduler,
        forward_group_size: 8,
        stop: StopMode::Drain,
        max_steps: None,
        seed: 1,
        refractory_dropout: None,
    }
}

fn run_all(net: &Network, data: &[(Vec<u32>, Vec<u32>, Vec<f32>)], config: &RunConfig) -> i64 {
    let mut synops = 0;
    for (i, (t, index, value)) in data.iter().enumerate() {
        let input = SampleInput::Sparse {
            t,
            index,
            value,
            timesteps: TIMESTEPS,
        };
        let r = run_sample(net, &input, None, i as u64, config).expect("run");
        synops += r.synops;
    }
    synops
}

fn bench_schedulers(c: &mut Criterion, name: &str, schedulers: &[(&str, Scheduler)]) {
    let net = network();
    let data = inputs();
    let mut group = c.benchmark_group(name);
    group
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(10);
    for &(label, scheduler) in schedulers {
        let cfg = config(scheduler);
        // Activity summary, printed once per scheduler.
        let mut spikes = [0i64; 3];
        let mut synops = 0i64;
        let mut out_spikes = 0i64;
        let mut steps = 0i64;
        for (i, (t, index, value)) in data.iter().enumerate() {
            let input = SampleInput::Sparse {
                t,
                index,
                value,
                timesteps: TIMESTEPS,
            };
            let r = run_sample(&net, &input, None, i as u64, &cfg).expect("run");
            for (s, x) in spikes.iter_mut().zip(&r.spikes) {
                *s += x;
            }
            synops += r.synops;
            out_spikes += r.output_counts.iter().sum::<i64>();
            steps += r.forward_steps;
        }
        let per = (BATCH * TIMESTEPS) as f64;
        eprintln!(
            "{name}/{label}: spikes per sample-timestep by layer {:.1} / {:.1} / {:.1}, \
             forward steps per timestep {:.1}, synops per sample {}, output spikes per sample {:.1}",
            spikes[0] as f64 / per,
            spikes[1] as f64 / per,
            spikes[2] as f64 / per,
            steps as f64 / per,
            synops / BATCH as i64,
            out_spikes as f64 / BATCH as f64,
        );
        group.throughput(Throughput::Elements(synops as u64));
        group.bench_function(label, |b| b.iter(|| black_box(run_all(&net, &data, &cfg))));
    }
    group.finish();
}

fn momentum(c: &mut Criterion) {
    bench_schedulers(
        c,
        "dense_784_512_512_10",
        &[("momentum_f8_batch16", Scheduler::Momentum { jitter: 0.0 })],
    );
}

fn other_schedulers(c: &mut Criterion) {
    bench_schedulers(
        c,
        "dense_784_512_512_10_schedulers",
        &[
            ("random_f8_batch16", Scheduler::Random),
            ("fifo_f8_batch16", Scheduler::Fifo),
            ("layered_batch16", Scheduler::Layered),
            (
                "momentum_jitter_f8_batch16",
                Scheduler::Momentum { jitter: 0.1 },
            ),
        ],
    );
}

criterion_group!(benches, momentum, other_schedulers);
criterion_main!(benches);
