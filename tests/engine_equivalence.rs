//! Equivalences of the engine: R4.5 (layered = the layer-synchronous network) and the
//! storage layout of conv/pool targets against the dense expansion of the network.

#[path = "support/nets.rs"]
mod nets;

use _engine::{
    Network, NetworkSpec, PoolKind, PopulationSpec, ProjectionKind, ProjectionSpec, Scheduler,
};
use nets::*;

/// The channel-last storage of conv/pool targets (and the switch to integrating a
/// population whole) is invisible: a network of conv, pool and dense projections
/// gives the same spikes, readout, steps and queue as its dense expansion (every
/// projection written as the dense matrix of its synapses, so every population is
/// stored by id and integrated whole), for every scheduler, F and refractory
/// dropout. Grid weights k/256 and small counts make every sum exact, so the order
/// of the additions cannot matter. Covered: a channel-last conv target with
/// per-neuron thresholds and a dense skip into it (rows permuted to slots), a
/// channel-last pool target, and a population whose two conv projections disagree
/// on the plane (stored by id, strided deliveries).
#[test]
fn storage_layout_matches_dense_expansion() {
    let mut g = Lcg(777);
    let mut grid = |n: usize, lo: i32, hi: i32| -> Vec<f32> {
        (0..n)
            .map(|_| (lo + g.below((hi - lo) as u32) as i32) as f32 / 256.0)
            .collect()
    };
    let th1: Vec<f32> = grid(400, 200, 400);
    let pops = vec![
        PopulationSpec {
            size: 400, // 4 x 10 x 10, channel-last
            threshold: th1,
            beta: vec![0.75],
            refractory_dropout: 0.5,
            bias: vec![0.0],
            reset: _engine::ResetMode::Zero,
            alpha: vec![0.0],
        },
        PopulationSpec {
            size: 100, // 4 x 5 x 5 (sum pool), channel-last
            threshold: vec![1.5],
            beta: vec![0.5],
            refractory_dropout: 0.5,
            bias: vec![0.0],
            reset: _engine::ResetMode::Zero,
            alpha: vec![0.0],
        },
        PopulationSpec {
            size: 50, // 2 x 5 x 5 and 1 x 10 x 5: planes disagree, stored by id
            threshold: vec![2.0],
            beta: vec![1.0],
            refractory_dropout: 0.0,
            bias: vec![0.0],
            reset: _engine::ResetMode::Zero,
            alpha: vec![0.0],
        },
        pop(4, 2.0, 0.75),
    ];
    let projs = vec![
        conv2d(
            0,
            1,
            grid(4 * 2 * 9, -60, 160),
            2,
            (10, 10),
            4,
            (3, 3),
            (1, 1),
            (1, 1),
        ),
        ProjectionSpec {
            source: 1,
            target: 2,
            kind: ProjectionKind::Pool {
                kind: PoolKind::Sum,
                channels: 4,
                in_h: 10,
                in_w: 10,
                kh: 2,
                kw: 2,
                stride: (2, 2),
            },
        },
        conv2d(
            2,
            3,
            grid(2 * 4 * 9, -120, 140),
            4,
            (5, 5),
            2,
            (3, 3),
            (1, 1),
            (1, 1),
        ),
        conv2d(
            0,
            3,
            grid(2 * 2, -40, 120),
            2,
            (10, 10),
            1,
            (1, 2),
            (1, 2),
            (0, 0),
        ),
        dense(0, 2, grid(100 * 200, -60, 100)),
        dense(3, 4, grid(4 * 50, -150, 160)),
    ];
    let spec = NetworkSpec {
        input_size: 200,
        populations: pops,
        projections: projs,
    };
    let conv_net = Network::new(spec.clone()).expect("valid network");
    // The dense expansion, built from the definition of each projection (R1.2,
    // `conv_brute`), not from the engine's tables; a sum pool is a conv whose kernel
    // is 1 from a channel to itself.
    let mut dense_spec = spec.clone();
    for (pi, proj) in spec.projections.iter().enumerate() {
        let n_s = if proj.source == 0 {
            spec.input_size
        } else {
            spec.populations[proj.source - 1].size
        };
        let n_d = spec.populations[proj.target - 1].size;
        let mut w = vec![0.0f32; n_d * n_s];
        for j in 0..n_s {
            let taps: Vec<(usize, f32)> = match &proj.kind {
                ProjectionKind::Dense { weight } => {
                    (0..n_d).map(|q| (q, weight[q * n_s + j])).collect()
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
                } => conv_brute(*c_in, *in_h, *in_w, *c_out, *kh, *kw, *stride, *padding, j)
                    .into_iter()
                    .map(|(q, wi)| (q, weight[wi]))
                    .collect(),
                ProjectionKind::Pool {
                    kind,
                    channels,
                    in_h,
                    in_w,
                    kh,
                    kw,
                    stride,
                } => {
                    assert_eq!(*kind, PoolKind::Sum);
                    let c = *channels;
                    conv_brute(c, *in_h, *in_w, c, *kh, *kw, *stride, (0, 0), j)
                        .into_iter()
                        .filter(|&(_, wi)| (wi / (kh * kw)) % (c + 1) == 0)
                        .map(|(q, _)| (q, 1.0))
                        .collect()
                }
            };
            for (q, x) in taps {
                w[q * n_s + j] += x;
            }
        }
        dense_spec.projections[pi].kind = ProjectionKind::Dense { weight: w };
    }
    let dense_net = Network::new(dense_spec).expect("valid network");
    let timesteps = 4;
    for sample in 0..3 {
        // Sparse counts: about 3 % (sample 0), 15 % and 40 % of the inputs.
        let pct = [3, 15, 40][sample];
        let frames: Vec<f32> = (0..timesteps * 200)
            .map(|_| {
                if g.below(100) < pct {
                    1.0 + g.below(2) as f32
                } else {
                    0.0
                }
            })
            .collect();
        for scheduler in ALL {
            for f in [1, 3, 64] {
                for dropout in [None, Some(vec![0.5, 0.5, 0.0, 0.0])] {
                    let mut config = cfg(scheduler, f);
                    config.refractory_dropout = dropout.clone();
                    config.seed = 5;
                    let a = run_dense(&conv_net, &frames, timesteps, Some(1), &config);
                    let b = run_dense(&dense_net, &frames, timesteps, Some(1), &config);
                    let what = format!("sample {sample} {scheduler:?} F={f} {dropout:?}");
                    assert_eq!(a.spikes, b.spikes, "{what}");
                    assert_eq!(a.output_counts, b.output_counts, "{what}");
                    assert_eq!(a.timestep_output_counts, b.timestep_output_counts, "{what}");
                    assert_eq!(a.timestep_forward_steps, b.timestep_forward_steps, "{what}");
                    assert_eq!(a.queue_peak, b.queue_peak, "{what}");
                    assert_eq!(a.first_output_step, b.first_output_step, "{what}");
                    assert_eq!(a.first_correct_step, b.first_correct_step, "{what}");
                    assert_eq!(a.first_output_spikes, b.first_output_spikes, "{what}");
                    assert!(a.spikes_total > 0, "{what}: the network is active");
                }
            }
        }
    }
}

/// Plain layer-synchronous LIF (R4.5): per timestep and layer,
/// U = beta*V + W s; s = U > theta; V = U (1 - s). Returns spikes per layer and the
/// output counts.
fn layer_sync(
    sizes: &[usize],
    weights: &[Vec<f32>],
    th: &[f32],
    beta: &[f32],
    frames: &[f32],
    timesteps: usize,
) -> (Vec<i64>, Vec<i64>) {
    let nl = sizes.len() - 1;
    let mut v: Vec<Vec<f32>> = sizes[1..].iter().map(|&s| vec![0.0; s]).collect();
    let mut spikes = vec![0i64; nl];
    let mut out = vec![0i64; sizes[nl]];
    for t in 0..timesteps {
        let mut s_prev: Vec<f32> = frames[t * sizes[0]..(t + 1) * sizes[0]].to_vec();
        for l in 0..nl {
            let (n_s, n_d) = (sizes[l], sizes[l + 1]);
            let mut s_new = vec![0.0f32; n_d];
            for q in 0..n_d {
                let mut i = 0.0f32;
                for j in 0..n_s {
                    i += s_prev[j] * weights[l][q * n_s + j];
                }
                let u = beta[l] * v[l][q] + i;
                if u > th[l] {
                    s_new[q] = 1.0;
                    v[l][q] = 0.0;
                    spikes[l] += 1;
                    if l == nl - 1 {
                        out[q] += 1;
                    }
                } else {
                    v[l][q] = u;
                }
            }
            s_prev = s_new;
        }
    }
    (spikes, out)
}

/// R4.5: layered (and any scheduler with F >= widest population, no skips, no
/// dropout) equals the layer-synchronous network, on grid weights k/256.
#[test]
fn layered_equivalence_random_dense_networks() {
    let mut g = Lcg(12345);
    for case in 0..60 {
        let nl = 1 + g.below(3) as usize;
        let mut sizes = vec![1 + g.below(6) as usize];
        for _ in 0..nl {
            sizes.push(1 + g.below(7) as usize);
        }
        let weights: Vec<Vec<f32>> = (0..nl)
            .map(|l| {
                (0..sizes[l] * sizes[l + 1])
                    .map(|_| (g.below(512) as i32 - 192) as f32 / 256.0)
                    .collect()
            })
            .collect();
        let th: Vec<f32> = (0..nl)
            .map(|_| (64 + g.below(256)) as f32 / 256.0)
            .collect();
        let beta: Vec<f32> = (0..nl)
            .map(|_| [1.0, 0.5, 0.75, 0.0][g.below(4) as usize])
            .collect();
        let timesteps = 1 + g.below(6) as usize;
        let frames: Vec<f32> = (0..timesteps * sizes[0])
            .map(|_| [0.0, 0.0, 1.0, 2.0, 3.0][g.below(5) as usize])
            .collect();
        let n = net(
            sizes[0],
            (0..nl).map(|l| pop(sizes[l + 1], th[l], beta[l])).collect(),
            (0..nl)
                .map(|l| dense(l, l + 1, weights[l].clone()))
                .collect(),
        );
        let (want_spikes, want_out) = layer_sync(&sizes, &weights, &th, &beta, &frames, timesteps);
        let widest = *sizes[1..].iter().max().unwrap();
        for s in ALL {
            let f = if s == Scheduler::Layered { 1 } else { widest };
            for seed in [0u64, 99] {
                let mut c = cfg(s, f);
                c.seed = seed;
                let r = run_dense(&n, &frames, timesteps, None, &c);
                assert_eq!(r.spikes, want_spikes, "case {case} {s:?}");
                assert_eq!(r.output_counts, want_out, "case {case} {s:?}");
                r.fan_out_check();
                assert!(r
                    .timestep_forward_steps
                    .iter()
                    .all(|&k| k >= 1 && k <= nl as i64 + 1));
            }
        }
    }
}
