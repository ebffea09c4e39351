//! The rules of docs/semantics.md through the public API (`run_sample`, `run_batch`,
//! `Network`): thresholds, refractoriness, leak, schedulers, stop modes, dropout and
//! multiplicities, conv/pool synapses and fan-outs, skip connections, sparse input,
//! sample ids; and the settling populations of `SPEC_VERSION` 2 (bias, reset modes,
//! settle-only steps).

#[path = "support/nets.rs"]
mod nets;

use std::sync::atomic::AtomicBool;

use _engine::engine::{EventKind, TraceEvent};
use _engine::rng::{uniform, STREAM_DROPOUT};
use _engine::{
    run_batch, run_sample, EngineError, Network, NetworkSpec, PoolKind, PopulationSpec,
    ProjectionKind, ProjectionSpec, ResetMode, SampleInput, Scheduler, StopMode,
};
use nets::*;

/// A population that receives dense rows and then a conv or pool delivery in one
/// forward step sums them in group order: `(a + -a) + b` keeps `b` (the output
/// fires), where `(a + b) + -a` would lose it.
#[test]
fn dense_then_conv_or_pool_into_one_population_keeps_group_order() {
    let tiny = 2f32.powi(-30);
    let big = 2f32.powi(30);
    let sum_pool = ProjectionSpec {
        source: 2,
        target: 3,
        kind: ProjectionKind::Pool {
            kind: PoolKind::Sum,
            channels: 1,
            in_h: 1,
            in_w: 1,
            kh: 1,
            kw: 1,
            stride: (1, 1),
        },
    };
    // (a, the last projection, b)
    let cases = [
        (
            1.0,
            conv2d(2, 3, vec![tiny], 1, (1, 1), 1, (1, 1), (1, 1), (0, 0)),
            tiny,
        ),
        (big, sum_pool, 1.0),
    ];
    for (a, last, b) in cases {
        let n = net(
            1,
            vec![pop(2, 1.0, 0.5), pop(1, 1.0, 0.5), pop(1, b / 2.0, 0.5)],
            vec![
                dense(0, 1, vec![2.0, 2.0]),
                dense(0, 2, vec![2.0]),
                dense(1, 3, vec![a, -a]),
                last,
            ],
        );
        for s in ALL.into_iter().filter(|s| *s != Scheduler::Layered) {
            let r = run_dense(&n, &[1.0], 1, None, &cfg(s, 64));
            assert_eq!(
                r.spikes[..2],
                [2, 1],
                "{s:?}, b = {b}: the hidden neurons fire"
            );
            assert_eq!(r.output_counts[0], 1, "{s:?}, b = {b}: the output fires");
        }
    }
}

#[test]
fn exact_threshold_does_not_fire() {
    let n = net(1, vec![pop(1, 1.0, 1.0)], vec![dense(0, 1, vec![0.5])]);
    let r = run_dense(&n, &[2.0], 1, None, &cfg(Scheduler::Fifo, 1));
    assert_eq!(r.spikes, vec![0]);
    assert_eq!(r.input_events, 1);
    assert_eq!(r.synops, 1);
    assert_eq!(r.prediction, -1);
    let r = run_dense(&n, &[2.0078125], 1, None, &cfg(Scheduler::Fifo, 1));
    assert_eq!(r.spikes, vec![1]);
    assert_eq!(r.prediction, 0);
    // Membrane carries over (beta = 1): 1.0 at t=0, then 1.0 + 0.5 > 1 at t=1.
    let r = run_dense(&n, &[2.0, 1.0], 2, None, &cfg(Scheduler::Fifo, 1));
    assert_eq!(r.timestep_output_counts, vec![0, 1]);
}

/// R4.6 / R4.3.1: a refractory neuron discards the current reaching it.
#[test]
fn refractory_neuron_discards_current() {
    // pop1 = A (1 neuron), pop2 = H (1 neuron, output). Input 0 -> A and H;
    // input 1 -> H only. A -> H with weight 0.75.
    let n = net(
        2,
        vec![pop(1, 0.5, 1.0), pop(1, 1.0, 1.0)],
        vec![
            dense(0, 1, vec![1.0, 0.0]),
            dense(0, 2, vec![2.0, 0.5]),
            dense(1, 2, vec![0.75]),
        ],
    );
    // t=0: H fires at step 0 (refractory), A's 0.75 at step 1 is discarded.
    // t=1: only 0.5 arrives: V = 0 + 0.5 <= 1: no spike. Had the 0.75 been
    // integrated, H would fire at t=1.
    let r = run_dense(&n, &[1.0, 0.0, 0.0, 1.0], 2, None, &cfg(Scheduler::Fifo, 1));
    assert_eq!(r.spikes, vec![1, 1]);
    assert_eq!(r.timestep_output_counts, vec![1, 0]);
    assert_eq!(r.timestep_forward_steps, vec![2, 1]);
    // Input 1 reaches A through a zero weight: still a synapse (R1.3).
    assert_eq!(r.synops_per_projection, vec![2, 2, 1]);
}

/// R4.3.1 / section 10.1: the last group of a timestep is integrated even when it
/// is inhibitory, and the membrane carries into the next timestep.
#[test]
fn inhibitory_last_group_is_integrated() {
    let n = net(
        2,
        vec![pop(1, 0.5, 1.0), pop(1, 0.5, 1.0)],
        vec![
            dense(0, 1, vec![1.0, 0.0]),
            dense(0, 2, vec![0.0, 0.75]),
            dense(1, 2, vec![-0.5]),
        ],
    );
    for s in ALL {
        let r = run_dense(&n, &[1.0, 0.0, 0.0, 1.0], 2, None, &cfg(s, 4));
        // t=1: V = -0.5 + 0.75 = 0.25 <= 0.5: no output spike.
        assert_eq!(r.spikes, vec![1, 0], "{s:?}");
        assert_eq!(r.timestep_forward_steps, vec![2, 1]);
    }
    // Without the inhibition the output would fire at t=1.
    let n2 = net(
        2,
        vec![pop(1, 0.5, 1.0), pop(1, 0.5, 1.0)],
        vec![dense(0, 1, vec![1.0, 0.0]), dense(0, 2, vec![0.0, 0.75])],
    );
    let r = run_dense(
        &n2,
        &[1.0, 0.0, 0.0, 1.0],
        2,
        None,
        &cfg(Scheduler::Fifo, 4),
    );
    assert_eq!(r.spikes, vec![1, 1]);
}

/// R4.1: leak V <- beta * V at the start of each timestep.
#[test]
fn leak_is_applied() {
    let n = net(1, vec![pop(1, 1.0, 0.5)], vec![dense(0, 1, vec![0.75])]);
    // t0: 0.75; t1: 0.375 + 0.75 = 1.125 > 1 fires; t2: 0 + 0.75; t3: 1.125 fires.
    let r = run_dense(&n, &[1.0; 4], 4, None, &cfg(Scheduler::Fifo, 1));
    assert_eq!(r.timestep_output_counts, vec![0, 1, 0, 1]);
}

/// Empty input: one forward step per timestep, nothing else.
#[test]
fn empty_input() {
    let n = net(
        3,
        vec![pop(2, 1.0, 0.9), pop(2, 1.0, 0.9)],
        vec![dense(0, 1, vec![1.0; 6]), dense(1, 2, vec![1.0; 4])],
    );
    for s in ALL {
        let r = run_dense(&n, &[0.0; 9], 3, Some(1), &cfg(s, 2));
        assert_eq!(r.forward_steps, 3);
        assert_eq!(r.timestep_forward_steps, vec![1, 1, 1]);
        assert_eq!(r.spikes_total, 0);
        assert_eq!(r.synops, 0);
        assert_eq!(r.input_events, 0);
        assert_eq!(r.prediction, -1);
        assert_eq!(r.first_output_step, vec![-1; 3]);
        assert_eq!(r.first_correct_step, vec![-1; 3]);
        assert_eq!(r.queue_peak, 0);
        // Sparse form with no events.
        let r2 = run_sample(
            &n,
            &SampleInput::Sparse {
                t: &[],
                index: &[],
                value: &[],
                timesteps: 3,
            },
            Some(1),
            0,
            &cfg(s, 2),
        )
        .unwrap();
        assert_eq!(r, r2);
    }
}

/// Network for the order tests: input 0 -> h0 (v 1.25), input 1 -> h1 (v 2.5);
/// h0 -> out0, h1 -> out1; h2 (fed by input 2) -> nothing useful.
fn order_net() -> Network {
    net(
        3,
        vec![pop(3, 1.0, 1.0), pop(2, 0.5, 1.0)],
        vec![
            dense(0, 1, vec![1.25, 0.0, 0.0, 0.0, 2.5, 0.0, 0.0, 0.0, 1.5]),
            dense(1, 2, vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
        ],
    )
}

/// R5.2 vs R5.4 with F = 1 and R6.2 first_output stop with M = 0.
#[test]
fn scheduler_order_and_first_output_stop() {
    let n = order_net();
    let frames = [1.0, 1.0, 1.0];
    let mut c = cfg(Scheduler::Fifo, 1);
    c.stop = StopMode::FirstOutput { extra_steps: 0 };
    // fifo: h0 (smallest id, enqueued first) goes first -> out0 at step 1.
    let r = run_dense(&n, &frames, 1, Some(1), &c);
    assert_eq!(r.first_output_step, vec![1]);
    assert_eq!(r.first_output_class, vec![0]);
    assert_eq!(r.dropped_spikes, 2);
    assert_eq!(r.forward_steps, 2);
    assert_eq!(r.output_counts, vec![1, 0]);
    assert_eq!(r.first_correct_step, vec![-1]);
    assert_eq!(r.queue_peak, 3);
    // R7.7: spikes in steps 0..=1 = 3 hidden + 1 output; synops integrated in
    // steps 0..=1 = 3 input deliveries * 3 + one hidden delivery * 2.
    assert_eq!(r.first_output_spikes, vec![4]);
    assert_eq!(r.first_output_synops, vec![11]);
    // momentum: h1 (v_pre 2.5) first -> out1, then h2 (1.5) and h0 (1.25).
    c.scheduler = Scheduler::Momentum { jitter: 0.0 };
    let r = run_dense(&n, &frames, 1, Some(1), &c);
    assert_eq!(r.first_output_class, vec![1]);
    assert_eq!(r.first_correct_step, vec![1]);
    assert_eq!(r.first_correct_spikes, vec![4]);
    assert_eq!(r.first_correct_synops, vec![11]);
    assert_eq!(r.output_counts, vec![0, 1]);
    assert_eq!(r.prediction, 1);
    // M = 1: one more group (h2: nothing reaches the outputs), then stop.
    c.stop = StopMode::FirstOutput { extra_steps: 1 };
    let r = run_dense(&n, &frames, 1, Some(0), &c);
    assert_eq!(r.forward_steps, 3);
    assert_eq!(r.dropped_spikes, 1);
    assert_eq!(r.output_counts, vec![0, 1]);
    assert_eq!(r.first_correct_step, vec![-1]);
    // Drain: everything is delivered.
    c.stop = StopMode::Drain;
    let r = run_dense(&n, &frames, 1, Some(0), &c);
    assert_eq!(r.forward_steps, 4);
    assert_eq!(r.dropped_spikes, 0);
    assert_eq!(r.output_counts, vec![1, 1]);
    assert_eq!(r.first_correct_step, vec![3]);
    assert_eq!(r.first_correct_spikes, vec![5]);
    assert_eq!(r.first_correct_synops, vec![9 + 6]);
    // Prediction tie -> smallest index.
    assert_eq!(r.prediction, 0);
    // R6.3 max_steps = 2 with drain: steps 0 and 1, then the rest is dropped.
    c.max_steps = Some(2);
    let r = run_dense(&n, &frames, 1, None, &c);
    assert_eq!(r.forward_steps, 2);
    assert_eq!(r.dropped_spikes, 2);
    // max_steps = 1: only the input step.
    c.max_steps = Some(1);
    let r = run_dense(&n, &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0], 2, None, &c);
    assert_eq!(r.timestep_forward_steps, vec![1, 1]);
    // t=0: h0, h1, h2 dropped; t=1: h0 fires again and is dropped.
    assert_eq!(r.dropped_spikes, 4);
    assert_eq!(r.spikes, vec![4, 0]);
    // Layered delivers all of population 1 in one group.
    let r = run_dense(&n, &frames, 1, None, &cfg(Scheduler::Layered, 1));
    assert_eq!(r.forward_steps, 2);
    assert_eq!(r.output_counts, vec![1, 1]);
}

/// R5.3 random: reproducible for a seed, a function of (seed, sample).
#[test]
fn random_scheduler_reproducible() {
    let n = order_net();
    let frames = [1.0, 1.0, 1.0];
    let mut c = cfg(Scheduler::Random, 1);
    c.stop = StopMode::FirstOutput { extra_steps: 0 };
    let mut classes = std::collections::BTreeSet::new();
    for seed in 0..40u64 {
        c.seed = seed;
        let a = run_dense(&n, &frames, 1, None, &c);
        let b = run_dense(&n, &frames, 1, None, &c);
        assert_eq!(a, b);
        // Which of h0/h1/h2 is delivered first follows the smallest key at k = 0.
        let keys: Vec<u32> = (0..3u32)
            .map(|j| _engine::rng::hash(seed, 0, 0, 0, j, 0))
            .collect();
        let first = (0..3).min_by_key(|&j| (keys[j], j)).unwrap();
        if first == 2 {
            assert_eq!(a.first_output_step, vec![2]);
        } else {
            assert_eq!(a.first_output_step, vec![1]);
            assert_eq!(a.first_output_class, vec![first as i64]);
        }
        classes.insert(a.first_output_class[0]);
    }
    assert_eq!(classes.len(), 2);
}

/// R4.6: with refractory dropout a neuron may fire again while pending; its
/// multiplicity grows and its delivery carries m * w but counts its fan-out once.
#[test]
fn multiplicity_under_dropout() {
    // pop1 A (2 neurons), pop2 B (1), pop3 C (1, output).
    let n = net(
        1,
        vec![pop(2, 0.5, 1.0), pop(1, 0.5, 1.0), pop(1, 1.0, 1.0)],
        vec![
            dense(0, 1, vec![1.0, 1.0]),
            dense(0, 2, vec![1.0]),
            dense(1, 2, vec![1.0, 1.0]),
            dense(2, 3, vec![0.375]),
        ],
    );
    let p = 0.9;
    // Find a seed for which B (id 2) stays non-refractory at steps 0 and 1 and A's
    // neurons become refractory (p = 0 there anyway).
    let seed = (0u64..)
        .find(|&s| (0..3).all(|k| (uniform(s, 0, 0, k, 2, STREAM_DROPOUT) as f64) < p))
        .unwrap();
    let mut c = cfg(Scheduler::Fifo, 1);
    c.seed = seed;
    c.refractory_dropout = Some(vec![0.0, p, 0.0]);
    let r = run_dense(&n, &[1.0], 1, None, &c);
    // B fires at steps 0, 1, 2 (m = 3), delivered at step 3: C gets 3 * 0.375.
    assert_eq!(r.spikes, vec![2, 3, 1]);
    assert_eq!(r.synops_per_projection, vec![2, 1, 2, 1]);
    assert_eq!(r.output_counts, vec![1]);
    assert_eq!(r.forward_steps, 4);
    assert_eq!(r.queue_peak, 3);
    // Without dropout: B fires once, C gets 0.375 only.
    c.refractory_dropout = None;
    let r = run_dense(&n, &[1.0], 1, None, &c);
    assert_eq!(r.spikes, vec![2, 1, 0]);
    // Dropout values of the network spec are not used unless passed (R4.6).
    let mut spec = n.spec().clone();
    spec.populations[1].refractory_dropout = p;
    let n2 = Network::new(spec).unwrap();
    let r2 = run_dense(&n2, &[1.0], 1, None, &c);
    assert_eq!(r, r2);
    // Dropped spikes count multiplicities (R6.4): stop after step 2 with B at m=3.
    c.refractory_dropout = Some(vec![0.0, p, 0.0]);
    c.max_steps = Some(3);
    let r = run_dense(&n, &[1.0], 1, None, &c);
    assert_eq!(r.dropped_spikes, 3);
    assert_eq!(r.spikes, vec![2, 3, 0]);
}

#[test]
#[allow(clippy::type_complexity)]
fn conv_fan_out_and_synapses_match_definition() {
    let geoms: [(
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        (usize, usize),
        (usize, usize),
    ); 6] = [
        (1, 4, 4, 2, 3, 3, (1, 1), (1, 1)),
        (2, 5, 4, 3, 3, 2, (2, 1), (1, 0)),
        (1, 6, 6, 1, 2, 2, (2, 2), (0, 0)),
        (2, 3, 3, 2, 3, 3, (1, 1), (2, 2)),
        (1, 7, 5, 2, 3, 3, (3, 2), (1, 1)),
        (3, 1, 5, 2, 1, 3, (1, 1), (0, 1)),
    ];
    for (c_in, h, w, c_out, kh, kw, s, pd) in geoms {
        let oh = (h + 2 * pd.0 - kh) / s.0 + 1;
        let ow = (w + 2 * pd.1 - kw) / s.1 + 1;
        let weight: Vec<f32> = (0..c_out * c_in * kh * kw).map(|i| i as f32).collect();
        let n = net(
            c_in * h * w,
            vec![pop(c_out * oh * ow, 1.0, 1.0)],
            vec![ProjectionSpec {
                source: 0,
                target: 1,
                kind: ProjectionKind::Conv2d {
                    weight: weight.clone(),
                    c_in,
                    in_h: h,
                    in_w: w,
                    c_out,
                    kh,
                    kw,
                    stride: s,
                    padding: pd,
                },
            }],
        );
        for src in 0..c_in * h * w {
            let want = conv_brute(c_in, h, w, c_out, kh, kw, s, pd, src);
            let mut got: Vec<(usize, usize)> = n
                .synapses(0, src)
                .into_iter()
                .map(|(q, wv)| (q, wv as usize))
                .collect();
            got.sort_unstable();
            assert_eq!(
                got,
                want,
                "geom {:?} src {src}",
                (c_in, h, w, c_out, kh, kw, s, pd)
            );
            assert_eq!(n.fan_out(0, src), vec![want.len() as u64]);
        }
    }
    // Padding edges: 3x3 kernel, pad 1, 4x4 input, 2 output channels.
    let n = net(
        16,
        vec![pop(32, 1.0, 1.0)],
        vec![ProjectionSpec {
            source: 0,
            target: 1,
            kind: ProjectionKind::Conv2d {
                weight: vec![0.0; 18],
                c_in: 1,
                in_h: 4,
                in_w: 4,
                c_out: 2,
                kh: 3,
                kw: 3,
                stride: (1, 1),
                padding: (1, 1),
            },
        }],
    );
    assert_eq!(n.fan_out(0, 0), vec![8]); // corner: 2x2 positions x 2 channels
    assert_eq!(n.fan_out(0, 1), vec![12]); // edge
    assert_eq!(n.fan_out(0, 5), vec![18]); // interior
                                           // Zero weights are synapses (R1.3): synops count them.
    let mut frames = vec![0.0; 16];
    frames[0] = 1.0;
    frames[5] = 2.0;
    let r = run_dense(&n, &frames, 1, None, &cfg(Scheduler::Fifo, 1));
    assert_eq!(r.synops, 26);
    assert_eq!(r.input_events, 2);
}

#[test]
fn pool_fan_out_and_weights() {
    // 2 channels of 4x4, 2x2 average pool stride 2 -> 2 x 2x2.
    let mk = |kind, k: usize, s: usize, out: usize| {
        net(
            32,
            vec![pop(2 * out * out, 0.5, 1.0)],
            vec![ProjectionSpec {
                source: 0,
                target: 1,
                kind: ProjectionKind::Pool {
                    kind,
                    channels: 2,
                    in_h: 4,
                    in_w: 4,
                    kh: k,
                    kw: k,
                    stride: (s, s),
                },
            }],
        )
    };
    let n = mk(PoolKind::Avg, 2, 2, 2);
    for src in 0..32 {
        assert_eq!(n.fan_out(0, src), vec![1]);
        let syn = n.synapses(0, src);
        let (c, y, x) = (src / 16, (src % 16) / 4, src % 4);
        assert_eq!(syn, vec![(c * 4 + (y / 2) * 2 + x / 2, 0.25)]);
    }
    // Average of a 2x2 block: 4 inputs of 0.75 -> 0.75 > 0.5 fires; 0.25*... .
    let mut frames = vec![0.0f32; 32];
    for i in [0, 1, 4, 5] {
        frames[i] = 0.75;
    }
    frames[16 + 10] = 1.0; // channel 1, (2,2): 0.25 <= 0.5, no spike
    let r = run_dense(&n, &frames, 1, None, &cfg(Scheduler::Fifo, 1));
    assert_eq!(r.timestep_output_counts, vec![1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(r.synops, 5);
    // Stride 1, kernel 2: 4x4 -> 3x3, fan-outs 1 (corner), 2 (edge), 4 (inner).
    let n = mk(PoolKind::Sum, 2, 1, 3);
    assert_eq!(n.fan_out(0, 0), vec![1]);
    assert_eq!(n.fan_out(0, 1), vec![2]);
    assert_eq!(n.fan_out(0, 5), vec![4]);
    assert_eq!(n.synapses(0, 5).iter().map(|s| s.1).sum::<f32>(), 4.0);
    // Kernel 3 stride 2 on 4x4 -> 1x1: the last row/column is not covered.
    let n = mk(PoolKind::Sum, 3, 2, 1);
    assert_eq!(n.fan_out(0, 3), vec![0]);
    assert_eq!(n.fan_out(0, 0), vec![1]);
    // Avg weight computed in float32: 1/9.
    let n = mk(PoolKind::Avg, 3, 1, 2);
    assert_eq!(n.synapses(0, 0)[0].1, 1.0f32 / 9.0f32);
}

/// Skip connection (R1.2): input -> h -> out and input -> out; currents add.
#[test]
fn skip_connection() {
    let n = net(
        2,
        vec![pop(1, 0.5, 1.0), pop(1, 1.0, 1.0)],
        vec![
            dense(0, 1, vec![1.0, 0.0]),
            dense(1, 2, vec![0.5]),
            dense(0, 2, vec![0.0, 0.75]),
        ],
    );
    // Step 0: out gets 0.75 (no spike), h fires; step 1: out gets 0.5: 1.25 > 1.
    for s in ALL {
        let r = run_dense(&n, &[1.0, 1.0], 1, None, &cfg(s, 1));
        assert_eq!(r.spikes, vec![1, 1], "{s:?}");
        assert_eq!(r.first_output_step, vec![1]);
        assert_eq!(r.synops_per_projection, vec![2, 1, 2]);
        r.fan_out_check();
    }
    assert_eq!(n.fan_out(0, 0), vec![1, 1]);
    assert_eq!(n.fan_out(1, 0), vec![1]);
    assert_eq!(n.fan_out(2, 0), Vec::<u64>::new());
    assert_eq!(n.fan_out(3, 0), Vec::<u64>::new());
}

/// Dense and sparse forms give identical results (R2.2), repeated events summed.
#[test]
fn sparse_equals_dense() {
    let n = net(
        3,
        vec![pop(2, 1.0, 0.75), pop(2, 0.5, 0.75)],
        vec![
            dense(0, 1, vec![0.25, 0.5, -0.125, 0.375, 0.25, 0.5]),
            dense(1, 2, vec![1.0, -0.5, 0.25, 0.75]),
        ],
    );
    let t = [0u32, 2, 0, 1, 2, 0, 2];
    let index = [1u32, 0, 1, 2, 0, 2, 1];
    let value = [1.0f32, 2.0, 2.0, 3.0, 0.5, 1.0, 0.0];
    let mut frames = vec![0.0f32; 9];
    for e in 0..t.len() {
        frames[t[e] as usize * 3 + index[e] as usize] += value[e];
    }
    for s in ALL {
        let c = cfg(s, 1);
        let a = run_dense(&n, &frames, 3, Some(0), &c);
        let b = run_sample(
            &n,
            &SampleInput::Sparse {
                t: &t,
                index: &index,
                value: &value,
                timesteps: 3,
            },
            Some(0),
            0,
            &c,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.input_events, 4);
    }
}

/// The sample id enters the random function (R5.5): random and dropout results
/// differ between ids and agree between run_sample and run_batch.
#[test]
fn sample_id_and_batch_agree() {
    let mut g = Lcg(7);
    let sizes = [6usize, 8, 8, 3];
    let projs: Vec<ProjectionSpec> = (0..3)
        .map(|l| {
            dense(
                l,
                l + 1,
                (0..sizes[l] * sizes[l + 1])
                    .map(|_| (g.below(400) as f32 - 100.0) / 256.0)
                    .collect(),
            )
        })
        .collect();
    let n = net(
        6,
        (1..4).map(|l| pop(sizes[l], 0.5, 0.875)).collect(),
        projs,
    );
    let frames: Vec<Vec<f32>> = (0..6)
        .map(|_| (0..6 * 5).map(|_| g.below(3) as f32).collect())
        .collect();
    let inputs: Vec<SampleInput> = frames
        .iter()
        .map(|f| SampleInput::Dense {
            frames: f,
            timesteps: 5,
        })
        .collect();
    let ids: Vec<u64> = (0..6).map(|i| 1000 + i).collect();
    let cancel = AtomicBool::new(false);
    for s in ALL {
        let mut c = cfg(s, 2);
        c.seed = 5;
        c.refractory_dropout = Some(vec![0.25, 0.25, 0.0]);
        let batch = run_batch(&n, &inputs, None, &ids, &c, &cancel).unwrap();
        for (i, r) in batch.iter().enumerate() {
            assert_eq!(*r, run_sample(&n, &inputs[i], None, ids[i], &c).unwrap());
            r.fan_out_check();
        }
    }
}

// ------------------------------------------------------------------ SPEC_VERSION 2: settling

/// The spikes of a trace as `(t, k, population, neuron, v_pre)`.
fn spikes_of(trace: &[TraceEvent]) -> Vec<(u32, u32, u32, u32, f64)> {
    events(trace, EventKind::Spike)
}

/// R4.7 / R4.3.1: a bias is added once per timestep, in the step of the first delivery
/// into its population (not at every delivery); with silent sources the population
/// settles in a settle-only step (R4.3.4), which counts as a forward step (R7.5).
#[test]
fn bias_settles_once_per_timestep_with_the_first_delivery() {
    let n = net(
        1,
        vec![pop(2, 1.0, 1.0), pop_v2(1, 1.0, 1.0, 0.25, ResetMode::Zero)],
        vec![dense(0, 1, vec![2.0, 2.0]), dense(1, 2, vec![0.25, 0.25])],
    );
    assert!(n.is_settling());
    // fifo, F = 1: t0 settles at step 1 (0.25 + 0.25), step 2 adds 0.25: 0.75. t1 and
    // t2: settle-only steps add the bias alone: 1.0 (not above 1), then 1.25.
    // layered: one group, ((0.25 + 0.25) + 0.25) = 0.75 at step 1.
    for (s, steps) in [
        (Scheduler::Fifo, [3, 2, 2]),
        (Scheduler::Layered, [2, 2, 2]),
    ] {
        let (r, events) = traced(&n, &[1.0, 0.0, 0.0], 3, &cfg(s, 1));
        assert_eq!(r.timestep_forward_steps, steps, "{s:?}");
        assert_eq!(r.timestep_output_counts, [0, 0, 1], "{s:?}");
        assert_eq!(r.first_output_step, [-1, -1, 1], "{s:?}");
        assert_eq!(r.spikes, [2, 1], "{s:?}");
        assert_eq!(r.timestep_synops, [4, 0, 0], "{s:?}");
        let out: Vec<_> = spikes_of(&events)
            .into_iter()
            .filter(|e| e.2 == 2)
            .collect();
        assert_eq!(out, [(2, 1, 2, 0, 1.25)], "{s:?}");
        r.fan_out_check();
    }
}

/// R4.7: a population that the input targets settles in forward step 0 of every
/// timestep, also when the frame is all zero (no settle-only step).
#[test]
fn input_target_settles_in_step_0_of_a_silent_frame() {
    let n = net(
        1,
        vec![pop_v2(1, 1.0, 1.0, 0.5, ResetMode::Zero)],
        vec![dense(0, 1, vec![1.0])],
    );
    for s in ALL {
        let r = run_dense(&n, &[0.0; 3], 3, None, &cfg(s, 1));
        assert_eq!(r.timestep_forward_steps, [1, 1, 1], "{s:?}");
        assert_eq!(r.timestep_output_counts, [0, 0, 1], "{s:?}");
        assert_eq!((r.input_events, r.synops), (0, 0), "{s:?}");
    }
}

/// Two biased populations behind a silent one.
fn silent_chain() -> Network {
    net(
        1,
        vec![
            pop(1, 1.0, 1.0),
            pop_v2(1, 1.0, 1.0, 0.6, ResetMode::Zero),
            pop_v2(1, 1.0, 1.0, 0.5, ResetMode::Zero),
        ],
        vec![
            dense(0, 1, vec![1.0]),
            dense(1, 2, vec![1.0]),
            dense(2, 3, vec![1.0]),
        ],
    )
}

/// R4.3.4: when nothing is pending, the due population of the lowest index settles in
/// a settle-only step; its spike is then delivered (settling the next population with
/// that delivery) or the next due population settles alone. Spikes of settle-only steps
/// are traced like any spike (R7.10).
#[test]
fn settle_only_steps_go_lowest_index_first() {
    let n = silent_chain();
    for s in ALL {
        let (r, events) = traced(&n, &[0.0; 3], 3, &cfg(s, 1));
        // t0: step 1 settles population 2 (0.6), step 2 population 3 (0.5). t1: step 1
        // 1.2 fires; its delivery settles population 3 in step 2: 0.5 + (1 + 0.5).
        assert_eq!(r.timestep_forward_steps, [3, 3, 3], "{s:?}");
        assert_eq!(r.spikes, [0, 1, 1], "{s:?}");
        assert_eq!(r.timestep_output_counts, [0, 1, 0], "{s:?}");
        assert_eq!(r.first_output_step, [-1, 2, -1], "{s:?}");
        assert_eq!(r.timestep_synops, [0, 1, 0], "{s:?}");
        assert_eq!(
            spikes_of(&events),
            [(1, 1, 2, 0, 1.2000000476837158), (1, 2, 3, 0, 2.0)],
            "{s:?}"
        );
        let deliveries: Vec<(u32, u32, u32)> = events
            .iter()
            .filter(|e| e.kind == EventKind::Delivery)
            .map(|e| (e.timestep, e.step, e.population))
            .collect();
        assert_eq!(deliveries, [(1, 1, 2)], "{s:?}");
    }
}

/// R6.4 / R4.7: a population still due at an early stop does not settle in that
/// timestep (its bias is lost); with `max_steps = 1` no population behind the input
/// ever settles.
#[test]
fn early_stop_leaves_due_populations_unsettled() {
    let n = silent_chain();
    let mut c = cfg(Scheduler::Fifo, 1);
    c.max_steps = Some(2);
    let r = run_dense(&n, &[0.0; 3], 3, None, &c);
    // Step 1 settles population 2 in each timestep; population 3 never settles.
    assert_eq!(r.timestep_forward_steps, [2, 2, 2]);
    assert_eq!(r.spikes, [0, 1, 0]);
    assert_eq!(r.dropped_spikes, 1);
    c.max_steps = Some(1);
    let r = run_dense(&n, &[0.0; 3], 3, None, &c);
    assert_eq!(r.timestep_forward_steps, [1, 1, 1]);
    assert_eq!(r.spikes, [0, 0, 0]);
}

/// R4.8: each reset mode on one neuron driven by the input at t = 0 only (weight 1,
/// threshold 1): the spikes per timestep and the membranes before the resets.
#[test]
fn each_reset_mode() {
    /// (beta, x, mode, spikes per timestep, v_pre of the spikes)
    type Case = (f32, f32, ResetMode, &'static [i64], &'static [f64]);
    let cases: [Case; 8] = [
        (1.0, 2.5, ResetMode::Zero, &[1, 0, 0, 0], &[2.5]),
        (1.0, 2.5, ResetMode::Subtract, &[1, 1, 0, 0], &[2.5, 1.5]),
        (
            1.0,
            2.5,
            ResetMode::SubtractDelayed,
            &[1, 1, 0, 0],
            &[2.5, 1.5],
        ),
        (1.0, 2.5, ResetMode::None, &[1, 1, 1, 1], &[2.5; 4]),
        // With a leak the delayed debt is paid after it: beta * V - 1, not
        // beta * (V - 1).
        (0.5, 3.5, ResetMode::Zero, &[1, 0, 0, 0], &[3.5]),
        (0.5, 3.5, ResetMode::Subtract, &[1, 1, 0, 0], &[3.5, 1.25]),
        (0.5, 3.5, ResetMode::SubtractDelayed, &[1, 0, 0, 0], &[3.5]),
        (0.5, 3.5, ResetMode::None, &[1, 1, 0, 0], &[3.5, 1.75]),
    ];
    for (beta, x, mode, spikes, v_pre) in cases {
        let n = net(
            1,
            vec![pop_v2(1, 1.0, beta, 0.0, mode)],
            vec![dense(0, 1, vec![1.0])],
        );
        assert_eq!(n.is_settling(), mode != ResetMode::Zero);
        for s in ALL {
            let (r, events) = traced(&n, &[x, 0.0, 0.0, 0.0], 4, &cfg(s, 1));
            assert_eq!(r.timestep_output_counts, spikes, "{mode:?} {beta} {s:?}");
            let seen: Vec<f64> = spikes_of(&events).iter().map(|e| e.4).collect();
            assert_eq!(seen, v_pre, "{mode:?} {beta} {s:?}");
            assert_eq!(r.timestep_forward_steps, [1; 4], "{mode:?} {s:?}");
        }
    }
}

/// R4.3.1 / R4.8: `subtract_delayed` pays its debt after the step's current has been
/// added, `(V + I) - threshold`, and the bias is part of that current,
/// `V + (I + b)`: at 2^24 the other orders round differently.
#[test]
fn delayed_debt_is_paid_after_the_current_and_bias_is_in_the_current() {
    let big = 16_777_216.0f32; // 2^24
                               // Debt: (2^24 + 1) - 1 = 2^24 - 1; (2^24 - 1) + 1 would be 2^24.
    let n = net(
        1,
        vec![pop_v2(1, 1.0, 1.0, 0.0, ResetMode::SubtractDelayed)],
        vec![dense(0, 1, vec![1.0])],
    );
    let (_, events) = traced(&n, &[big, 1.0], 2, &cfg(Scheduler::Fifo, 1));
    let seen: Vec<f64> = spikes_of(&events).iter().map(|e| e.4).collect();
    assert_eq!(seen, [16_777_216.0, 16_777_215.0]);
    // Bias: 2^24 + (1 + 1) = 2^24 + 2; (2^24 + 1) + 1 would be 2^24.
    let n = net(
        1,
        vec![pop_v2(1, 1.0, 1.0, 1.0, ResetMode::None)],
        vec![dense(0, 1, vec![1.0])],
    );
    let (_, events) = traced(&n, &[big - 1.0, 1.0], 2, &cfg(Scheduler::Fifo, 1));
    let seen: Vec<f64> = spikes_of(&events).iter().map(|e| e.4).collect();
    assert_eq!(seen, [16_777_216.0, 16_777_218.0]);
}

/// R4.6 / R4.8: a neuron whose reset leaves it above its threshold is refractory for
/// the rest of the timestep: later deliveries neither integrate nor fire it, on the
/// whole-population pass (dense) and on the touched-pixel pass (conv); it fires again
/// when its population settles in the next timestep.
#[test]
fn a_refractory_neuron_left_above_threshold_does_not_fire_again() {
    let n = net(
        1,
        vec![pop(2, 1.0, 1.0), pop_v2(1, 1.0, 1.0, 0.0, ResetMode::None)],
        vec![dense(0, 1, vec![2.0, 2.0]), dense(1, 2, vec![1.5, 1.5])],
    );
    for s in ALL {
        let r = run_dense(&n, &[1.0, 0.0], 2, None, &cfg(s, 1));
        assert_eq!(r.timestep_output_counts, [1, 1], "{s:?}");
    }
    // 1x8x8 -> conv 8 x (1x2) -> 8x8x7 (56 pixels: a delivery of 2 pixels stays on the
    // touched-pixel pass). Sources 0 and 1 both reach pixel 0; source 1 also pixel 1.
    let mut w = vec![0.0; 64 * 2];
    w[0] = 2.0; // W[0, 0]
    w[2] = 2.0; // W[1, 0]
    let n = net(
        2,
        vec![
            pop(64, 1.0, 1.0),
            pop_v2(8 * 56, 1.0, 1.0, 0.0, ResetMode::None),
        ],
        vec![
            dense(0, 1, w),
            conv2d(1, 2, vec![1.5; 16], 1, (8, 8), 8, (1, 2), (1, 1), (0, 0)),
        ],
    );
    for s in ALL.into_iter().filter(|s| *s != Scheduler::Layered) {
        let r = run_dense(&n, &[1.0, 0.0], 1, None, &cfg(s, 1));
        // Pixel 0 fires at the first delivery (8 neurons), pixel 1 at the second.
        assert_eq!(r.spikes, [2, 16], "{s:?}");
    }
}

/// R4.7: a settling population is integrated whole when it settles, also where no
/// synapse reaches (the padding border of a conv) and when the input touched one pixel.
#[test]
fn a_settling_conv_population_integrates_every_neuron() {
    let n = net(
        9,
        vec![pop_v2(25, 1.0, 1.0, 0.75, ResetMode::Zero)],
        vec![conv2d(
            0,
            1,
            vec![1.0],
            1,
            (3, 3),
            1,
            (1, 1),
            (1, 1),
            (1, 1),
        )],
    );
    let mut frames = vec![0.0; 4 * 9];
    for t in 0..4 {
        frames[t * 9 + 4] = 1.0;
    }
    for s in ALL {
        let r = run_dense(&n, &frames, 4, None, &cfg(s, 1));
        // The centre fires every timestep (1 + 0.75); the 24 others every second one.
        assert_eq!(r.timestep_spikes, [1, 25, 1, 25], "{s:?}");
        assert_eq!(r.timestep_forward_steps, [1; 4], "{s:?}");
    }
}

/// R1.4 / R4.6: refractory dropout needs reset zero, in the network (a model error)
/// and in a run's override (a parameter error); a bias must be finite and of length 1
/// or the population size.
#[test]
fn refractory_dropout_with_a_non_zero_reset_is_refused() {
    let build = |p: PopulationSpec| {
        Network::new(NetworkSpec {
            input_size: 1,
            populations: vec![p],
            projections: vec![dense(0, 1, vec![1.0, 1.0])],
        })
    };
    let model_field = |r: Result<Network, EngineError>| match r {
        Err(EngineError::Model { field, reason, .. }) => (field, reason),
        other => panic!("expected a model error, got {other:?}"),
    };
    for mode in [
        ResetMode::Subtract,
        ResetMode::SubtractDelayed,
        ResetMode::None,
    ] {
        let mut p = pop_v2(2, 1.0, 1.0, 0.0, mode);
        p.refractory_dropout = 0.5;
        let (field, reason) = model_field(build(p));
        assert_eq!(field, "refractory_dropout");
        assert!(reason.contains(mode.name()), "{reason}");
    }
    let mut p = pop_v2(2, 1.0, 1.0, 0.25, ResetMode::Zero);
    p.refractory_dropout = 0.5;
    assert!(build(p).is_ok(), "a bias with reset zero may have dropout");
    let mut p = pop(2, 1.0, 1.0);
    p.bias = vec![0.0, f32::NAN];
    assert_eq!(model_field(build(p)).0, "bias[1]");
    let mut p = pop(2, 1.0, 1.0);
    p.bias = vec![0.0; 3];
    assert_eq!(model_field(build(p)).0, "bias length");

    let n = build(pop_v2(2, 1.0, 1.0, 0.0, ResetMode::Subtract)).unwrap();
    let mut c = cfg(Scheduler::Fifo, 1);
    c.refractory_dropout = Some(vec![0.5]);
    let input = SampleInput::Dense {
        frames: &[1.0],
        timesteps: 1,
    };
    match run_sample(&n, &input, None, 0, &c) {
        Err(EngineError::Parameter { field, .. }) => assert_eq!(field, "refractory_dropout[0]"),
        other => panic!("expected a parameter error, got {other:?}"),
    }
    c.refractory_dropout = Some(vec![0.0]);
    assert!(run_sample(&n, &input, None, 0, &c).is_ok());
}

/// R1.6: zero biases (scalar, per neuron, negative zero) with reset zero do not make a
/// population settling, and the network runs exactly as in version 1.
#[test]
fn a_network_without_settling_populations_runs_as_in_version_1() {
    let build = |bias: Vec<f32>| {
        let mut hidden = pop(3, 0.5, 0.75);
        hidden.bias = bias;
        net(
            2,
            vec![hidden, pop(2, 0.5, 0.9)],
            vec![
                dense(0, 1, vec![0.5, 0.25, 0.75, 0.5, 0.125, 1.0]),
                dense(1, 2, vec![0.5, -0.25, 0.75, 0.25, 0.5, 0.625]),
            ],
        )
    };
    let v1 = build(vec![0.0]);
    let frames: Vec<f32> = (0..12).map(|i| ((i * 7) % 4) as f32 * 0.5).collect();
    for bias in [vec![0.0; 3], vec![-0.0]] {
        let n = build(bias);
        assert!(!n.is_settling());
        for s in ALL {
            for f in [1, 2, 8] {
                let c = cfg(s, f);
                assert_eq!(
                    run_dense(&n, &frames, 6, Some(1), &c),
                    run_dense(&v1, &frames, 6, Some(1), &c)
                );
            }
        }
    }
    // No settle-only steps: a silent input is one forward step per timestep.
    let r = run_dense(&v1, &[0.0; 12], 6, None, &cfg(Scheduler::Fifo, 1));
    assert_eq!(r.timestep_forward_steps, [1; 6]);
}

/// R8.3: a debtor whose payment overflows (`V - threshold` to -inf) fails the run like a
/// membrane that overflows at `V + I`, naming the step of the payment.
#[test]
fn a_paid_debt_that_overflows_is_a_membrane_error() {
    // beta 0: t0 fires at 2e38 (> 1e38) and owes 1e38; t1: 0 + (-3.4e38) is finite,
    // paying 1e38 overflows.
    let n = net(
        2,
        vec![pop_v2(1, 1e38, 0.0, 0.0, ResetMode::SubtractDelayed)],
        vec![dense(0, 1, vec![1.0, -1.0])],
    );
    for s in ALL {
        let frames = [2e38, 0.0, 0.0, 3.4e38];
        let input = SampleInput::Dense {
            frames: &frames,
            timesteps: 2,
        };
        let e = run_sample(&n, &input, None, 0, &cfg(s, 1)).unwrap_err();
        assert!(matches!(&e, EngineError::Overflow { what, .. } if what == "membrane"));
        assert_eq!(
            e.to_string(),
            "sample 0, timestep 1, forward step 0, population 1, neuron 0: membrane overflows",
            "{s:?}"
        );
        // Without the debt (reset none) the same run is fine.
        let none = net(
            2,
            vec![pop_v2(1, 1e38, 0.0, 0.0, ResetMode::None)],
            vec![dense(0, 1, vec![1.0, -1.0])],
        );
        assert!(run_sample(&none, &input, None, 0, &cfg(s, 1)).is_ok());
    }
}

// ------------------------------------------------------------------ R4.12: synaptic current

/// R4.12 under every scheduler on one layer (one forward step per timestep): the
/// neurons compute snnTorch's `Synaptic` in float32, `syn = alpha*syn + W x` (multiply,
/// then add), `mem = beta*mem + syn`, reset to zero above the threshold; a neuron with
/// `alpha = 0` is a LIF neuron. Written out by hand here.
#[test]
fn a_synaptic_layer_is_snntorch_synaptic() {
    let alpha = vec![0.5, 0.0, 0.875, 0.25];
    let (th, beta) = (1.0f32, 0.875f32);
    let w: Vec<f32> = (0..12)
        .map(|i| ((i * 37) % 23) as f32 / 32.0 - 0.125)
        .collect();
    let n = net(
        3,
        vec![pop_syn(4, th, beta, alpha.clone(), ResetMode::Zero)],
        vec![dense(0, 1, w.clone())],
    );
    assert!(n.is_synaptic() && n.is_settling());
    let steps = 12;
    let frames: Vec<f32> = (0..3 * steps).map(|i| ((i * 5) % 7 % 3) as f32).collect();
    let (mut syn, mut mem) = ([0f32; 4], [0f32; 4]);
    let mut want = vec![0i64; 4 * steps];
    for t in 0..steps {
        for q in 0..4 {
            let x = &frames[3 * t..3 * t + 3];
            let mut i = 0f32;
            for (j, &xj) in x.iter().enumerate() {
                if xj != 0.0 {
                    i += xj * w[q * 3 + j];
                }
            }
            let decayed = alpha[q] * syn[q];
            syn[q] = decayed + i;
            mem[q] = beta * mem[q] + syn[q];
            if mem[q] > th {
                want[t * 4 + q] = 1;
                mem[q] = 0.0;
            }
        }
    }
    assert!(want.iter().sum::<i64>() > 4, "the layer fires");
    // Without the synaptic current the same layer fires differently.
    let lif = net(3, vec![pop(4, th, beta)], vec![dense(0, 1, w)]);
    let c = cfg(Scheduler::Layered, 1);
    let r_lif = run_dense(&lif, &frames, steps, None, &c);
    assert_ne!(r_lif.timestep_output_counts, want);
    for s in ALL {
        let r = run_dense(&n, &frames, steps, None, &cfg(s, 1));
        assert_eq!(r.timestep_output_counts, want, "{s:?}");
        assert_eq!(r.timestep_forward_steps, vec![1; steps], "{s:?}");
        r.fan_out_check();
    }
}

/// R4.12, R4.6: current delivered after the settle charges `S` also of a refractory
/// neuron (whose membrane discards it) and reaches the membrane, decayed, at the next
/// settle; a spike does not reset `S`.
#[test]
fn a_refractory_neuron_still_charges_its_synaptic_current() {
    // in (2) -> relays (w 2) -> out (alpha 0.5, beta 0, threshold 0.875), fifo F = 1.
    // t0: out settles at step 1 with relay 0's 1.5 (S = V = 1.5): spike. Relay 1's 0.5
    // at step 2 is discarded by V but charges S = 2.0. t1 (silent input): the settle-only
    // step gives S = 1.0, V = 1.0 > 0.875: spike. Without the charge S would be 0.75.
    let n = net(
        2,
        vec![
            pop(2, 1.0, 1.0),
            pop_syn(1, 0.875, 0.0, vec![0.5], ResetMode::Zero),
        ],
        vec![
            dense(0, 1, vec![2.0, 0.0, 0.0, 2.0]),
            dense(1, 2, vec![1.5, 0.5]),
        ],
    );
    for s in [Scheduler::Fifo, Scheduler::Momentum { jitter: 0.0 }] {
        let (r, events) = traced(&n, &[1.0, 1.0, 0.0, 0.0, 0.0, 0.0], 3, &cfg(s, 1));
        let out: Vec<_> = spikes_of(&events)
            .into_iter()
            .filter(|e| e.2 == 2)
            .collect();
        assert_eq!(out, [(0, 1, 2, 0, 1.5), (1, 1, 2, 0, 1.0)], "{s:?}");
        // t2: S = 0.5, no spike; every timestep after t0 is a settle-only step.
        assert_eq!(r.timestep_forward_steps, [3, 2, 2], "{s:?}");
    }
}

/// R8.3: a synaptic current that overflows fails the run also while its neuron is
/// refractory (its membrane stays finite).
#[test]
fn a_synaptic_current_that_overflows_is_a_membrane_error() {
    let n = net(
        2,
        vec![
            pop(2, 1.0, 1.0),
            pop_syn(1, 1.0, 1.0, vec![1.0], ResetMode::Zero),
        ],
        vec![
            dense(0, 1, vec![2.0, 0.0, 0.0, 2.0]),
            dense(1, 2, vec![3e38, 3e38]),
        ],
    );
    let input = SampleInput::Dense {
        frames: &[1.0, 1.0],
        timesteps: 1,
    };
    for (s, k) in [
        (Scheduler::Fifo, 2),
        (Scheduler::Momentum { jitter: 0.0 }, 2),
        (Scheduler::Layered, 1),
    ] {
        let e = run_sample(&n, &input, None, 0, &cfg(s, 1)).unwrap_err();
        assert!(matches!(&e, EngineError::Overflow { what, .. } if what == "membrane"));
        assert_eq!(
            e.to_string(),
            format!("sample 0, timestep 0, forward step {k}, population 2, neuron 0: membrane overflows"),
            "{s:?}"
        );
    }
    // The same currents without the synaptic current: the second is discarded.
    let lif = net(
        2,
        vec![pop(2, 1.0, 1.0), pop(1, 1.0, 1.0)],
        vec![
            dense(0, 1, vec![2.0, 0.0, 0.0, 2.0]),
            dense(1, 2, vec![3e38, 3e38]),
        ],
    );
    assert!(run_sample(&lif, &input, None, 0, &cfg(Scheduler::Fifo, 1)).is_ok());
}

/// R4.12, R1.6: with alpha all 0 (also -0) a population is not synaptic and runs as
/// before; alpha must be finite, in [0, 1] and of length 1 or the population size.
#[test]
fn alpha_zero_is_lif_and_alpha_validates() {
    let build = |alpha: Vec<f32>| {
        Network::new(NetworkSpec {
            input_size: 1,
            populations: vec![pop_syn(2, 1.0, 0.5, alpha, ResetMode::Zero)],
            projections: vec![dense(0, 1, vec![0.75, 1.5])],
        })
    };
    let lif = build(vec![0.0]).unwrap();
    assert!(!lif.is_synaptic() && !lif.is_settling());
    for alpha in [vec![0.0, 0.0], vec![-0.0]] {
        let n = build(alpha).unwrap();
        assert!(!n.is_synaptic() && !n.is_settling());
        let frames = [1.0, 0.0, 2.0, 1.0];
        for s in ALL {
            let c = cfg(s, 2);
            assert_eq!(
                run_dense(&n, &frames, 4, None, &c),
                run_dense(&lif, &frames, 4, None, &c)
            );
        }
    }
    assert!(build(vec![0.0, 0.25]).unwrap().is_synaptic());
    for (alpha, field) in [
        (vec![1.5], "alpha[0]"),
        (vec![0.5, -0.25], "alpha[1]"),
        (vec![f32::NAN], "alpha[0]"),
        (vec![0.5; 3], "alpha length"),
    ] {
        let e = build(alpha.clone()).unwrap_err();
        assert!(
            matches!(&e, EngineError::Model { field: f, .. } if f == field),
            "{alpha:?}: {e}"
        );
    }
}
