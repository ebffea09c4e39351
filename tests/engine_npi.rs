//! R4.13 non-prioritised input through the public API, worked by hand: forward step 0
//! enqueues the frame's non-zero values as input entries, which `layered`, `fifo` and
//! `random` schedule with the spikes; `momentum` is refused; counters and trace.

#[path = "support/nets.rs"]
mod nets;

use _engine::engine::EventKind;
use _engine::rng::hash;
use _engine::{
    run_sample, EngineError, Network, ResetMode, RunConfig, SampleInput, Scheduler, StopMode,
};
use nets::*;

/// `cfg` with non-prioritised input.
fn npi(scheduler: Scheduler, f: usize) -> RunConfig {
    RunConfig {
        prioritize_input: false,
        ..cfg(scheduler, f)
    }
}

/// Three inputs into one hidden neuron A (threshold 1, weights 0.6 each), A into the
/// output (threshold 0.5).
fn three_into_one() -> Network {
    net(
        3,
        vec![pop(1, 1.0, 0.0), pop(1, 0.5, 0.0)],
        vec![dense(0, 1, vec![0.6, 0.6, 0.6]), dense(1, 2, vec![1.0])],
    )
}

/// `fifo` with F = 1 < 3 inputs: A fires on the first two inputs (step 2), the third
/// input is delivered before A (smaller sequence number) and is discarded (A is
/// refractory), then A reaches the output.
#[test]
fn fifo_fires_on_partial_input() {
    let n = three_into_one();
    let (r, trace) = traced(&n, &[1.0, 1.0, 1.0], 1, &npi(Scheduler::Fifo, 1));
    assert_eq!(r.timestep_forward_steps, vec![5]);
    assert_eq!(r.spikes, vec![1, 1]);
    assert_eq!(r.input_events, 3);
    assert_eq!(r.synops, 4);
    assert_eq!(r.synops_per_projection, vec![3, 1]);
    assert_eq!(r.queue_peak, 3);
    assert_eq!(r.first_output_step, vec![4]);
    assert_eq!(r.first_output_synops, vec![4]);
    assert_eq!(r.dropped_spikes, 0);
    let v = f64::from(0.6f32 + 0.6f32);
    assert_eq!(
        events(&trace, EventKind::Input),
        vec![(0, 0, 0, 0, 1.0), (0, 0, 0, 1, 1.0), (0, 0, 0, 2, 1.0)]
    );
    assert_eq!(
        events(&trace, EventKind::Spike),
        vec![(0, 2, 1, 0, v), (0, 4, 2, 0, 1.0)]
    );
    assert_eq!(
        events(&trace, EventKind::Delivery),
        vec![
            (0, 0, 0, 0, 1.0),
            (0, 1, 0, 1, 1.0),
            (0, 2, 0, 2, 1.0),
            (0, 3, 1, 0, 1.0)
        ]
    );
    // Prioritised: all three at step 0, A fires at once.
    let p = run_dense(&n, &[1.0, 1.0, 1.0], 1, None, &cfg(Scheduler::Fifo, 1));
    assert_eq!(p.timestep_forward_steps, vec![2]);
    assert_eq!(p.queue_peak, 1);

    // F = 2: inputs 0 and 1, then input 2 together with A (one slot left).
    let (r, trace) = traced(&n, &[1.0, 1.0, 1.0], 1, &npi(Scheduler::Fifo, 2));
    assert_eq!(r.timestep_forward_steps, vec![3]);
    assert_eq!(r.spikes, vec![1, 1]);
    assert_eq!(r.queue_peak, 3);
    assert_eq!(
        events(&trace, EventKind::Delivery),
        vec![
            (0, 0, 0, 0, 1.0),
            (0, 0, 0, 1, 1.0),
            (0, 1, 0, 2, 1.0),
            (0, 1, 1, 0, 1.0)
        ]
    );
}

/// `layered`: the input entries form the group of step 0 (F ignored); the spikes are
/// those of prioritised input, each timestep with a non-zero frame one step longer.
#[test]
fn layered_is_prioritised_one_step_later() {
    let n = net(
        3,
        vec![pop(2, 0.5, 0.5), pop(2, 0.4, 0.75), pop(2, 0.25, 0.5)],
        vec![
            dense(0, 1, vec![0.5, -0.25, 0.75, 0.25, 0.5, 0.125]),
            dense(1, 2, vec![0.5, 0.25, -0.125, 0.75]),
            dense(2, 3, vec![0.375, 0.5, 0.5, -0.25]),
        ],
    );
    let frames = [
        1.0, 0.0, 2.0, //
        0.0, 0.0, 0.0, //
        0.5, 1.0, 1.0, //
        0.0, 3.0, 0.0,
    ];
    let p = run_dense(&n, &frames, 4, None, &cfg(Scheduler::Layered, 1));
    let (r, trace) = traced(&n, &frames, 4, &npi(Scheduler::Layered, 1));
    assert_eq!(r.spikes, p.spikes);
    assert_eq!(r.timestep_output_counts, p.timestep_output_counts);
    assert_eq!(r.synops_per_projection, p.synops_per_projection);
    assert_eq!(r.input_events, p.input_events);
    let longer: Vec<i64> = (0..4)
        .map(|t| r.timestep_forward_steps[t] - p.timestep_forward_steps[t])
        .collect();
    assert_eq!(longer, vec![1, 0, 1, 1]);
    assert!(p.spikes.iter().all(|&s| s > 0), "{:?}", p.spikes);
    // Every input entry of a frame is delivered at the end of step 0.
    let inputs: Vec<_> = events(&trace, EventKind::Delivery)
        .into_iter()
        .filter(|e| e.2 == 0)
        .collect();
    assert_eq!(
        inputs,
        vec![
            (0, 0, 0, 0, 1.0),
            (0, 0, 0, 2, 2.0),
            (2, 0, 0, 0, 0.5),
            (2, 0, 0, 1, 1.0),
            (2, 0, 0, 2, 1.0),
            (3, 0, 0, 1, 3.0),
        ]
    );
    assert_eq!(r.queue_peak, 3.max(p.queue_peak));
}

/// `random`: keys `h(seed, sample, t, k, i, 5)` for input entries and R5.3's for the
/// neurons, F = 1. Input 0 makes A fire; A then competes with the inputs left. The
/// expected order is worked out from the keys; over the seeds, A overtakes an input.
#[test]
fn random_interleaves_inputs_and_spikes() {
    // Input 0 alone makes A fire; inputs 1 and 2 reach only the output (weight 0).
    let n = net(
        3,
        vec![pop(1, 0.5, 0.0), pop(1, 0.5, 0.0)],
        vec![dense(0, 1, vec![1.0, 0.0, 0.0]), dense(1, 2, vec![1.0])],
    );
    let mut overtakes = 0;
    for seed in 0..40u64 {
        let config = RunConfig {
            seed,
            ..npi(Scheduler::Random, 1)
        };
        let (r, trace) = traced(&n, &[1.0, 1.0, 1.0], 1, &config);
        // The oracle: pending entries (kind 0 = input, 1 = neuron A, id 0).
        let mut pending: Vec<(u32, u32)> = vec![(0, 0), (0, 1), (0, 2)];
        let mut want = Vec::new();
        let mut k = 0u32;
        while !pending.is_empty() {
            let key = |&(kind, i): &(u32, u32)| {
                let stream = if kind == 0 { 5 } else { 0 };
                (hash(seed, 0, 0, k, i, stream), kind, i)
            };
            let pick = *pending.iter().min_by_key(|e| key(e)).unwrap();
            pending.retain(|&e| e != pick);
            want.push((0, k, if pick.0 == 0 { 0 } else { 1 }, pick.1, 1.0));
            if pick == (0, 0) {
                pending.push((1, 0)); // A fires at step k + 1
            }
            k += 1;
        }
        assert_eq!(events(&trace, EventKind::Delivery), want, "seed {seed}");
        assert_eq!(r.timestep_forward_steps, vec![5], "seed {seed}");
        assert_eq!(r.spikes, vec![1, 1], "seed {seed}");
        assert_eq!(r.synops, 3 + 1, "seed {seed}");
        let a = want.iter().position(|e| e.2 == 1).unwrap();
        if a < 3 {
            overtakes += 1;
        }
    }
    assert!(overtakes > 0, "A overtakes an input for some seed");
}

/// `momentum` has no key for an input entry: a parameter error, with or without jitter.
#[test]
fn momentum_is_refused() {
    let n = three_into_one();
    for jitter in [0.0, 0.5] {
        let config = npi(Scheduler::Momentum { jitter }, 2);
        let e = run_sample(
            &n,
            &SampleInput::Dense {
                frames: &[1.0, 0.0, 0.0],
                timesteps: 1,
            },
            None,
            0,
            &config,
        )
        .unwrap_err();
        assert!(
            matches!(&e, EngineError::Parameter { field, .. } if field == "prioritize_input"),
            "{e:?}"
        );
    }
}

/// An early stop drops the pending input entries: not spikes, so not counted in
/// `dropped_spikes`; they stay counted in `input_events` and in `queue_peak`.
#[test]
fn early_stop_drops_inputs_uncounted() {
    let n = three_into_one();
    let config = RunConfig {
        max_steps: Some(2),
        ..npi(Scheduler::Fifo, 1)
    };
    let (r, trace) = traced(&n, &[1.0, 1.0, 1.0, 0.0, 0.0, 1.0], 2, &config);
    assert_eq!(r.timestep_forward_steps, vec![2, 2]);
    assert_eq!(r.input_events, 4);
    assert_eq!(r.dropped_spikes, 0);
    assert_eq!(r.queue_peak, 3);
    assert_eq!(r.synops, 2);
    assert_eq!(r.spikes, vec![0, 0]);
    assert_eq!(
        events(&trace, EventKind::Delivery),
        vec![(0, 0, 0, 0, 1.0), (1, 0, 0, 2, 1.0)]
    );
    assert_eq!(events(&trace, EventKind::Input).len(), 4);

    // first_output with a spike and an input pending: only the spike is counted.
    let n2 = net(
        2,
        vec![pop(1, 0.5, 0.0), pop(1, 0.5, 0.0), pop(1, 0.5, 0.0)],
        vec![
            dense(0, 1, vec![1.0, 0.0]),
            dense(1, 2, vec![1.0]),
            dense(0, 3, vec![0.0, 1.0]),
        ],
    );
    // fifo F = 1: input 0 (A fires at step 1), input 1 (the output fires at step 2;
    // A still pending) -> the stop drops A's spike.
    let config = RunConfig {
        stop: StopMode::FirstOutput { extra_steps: 0 },
        ..npi(Scheduler::Fifo, 1)
    };
    let r = run_dense(&n2, &[1.0, 1.0], 1, None, &config);
    assert_eq!(r.timestep_forward_steps, vec![3]);
    assert_eq!(r.first_output_step, vec![2]);
    assert_eq!(r.dropped_spikes, 1);
    assert_eq!(r.spikes, vec![1, 0, 1]);
    // max_steps = 1: both inputs dropped at step 0, nothing counted.
    let config = RunConfig {
        max_steps: Some(1),
        ..npi(Scheduler::Random, 1)
    };
    let r = run_dense(&n2, &[1.0, 1.0], 1, None, &config);
    assert_eq!(
        (
            r.forward_steps,
            r.dropped_spikes,
            r.queue_peak,
            r.input_events,
            r.synops
        ),
        (1, 0, 2, 2, 0)
    );
}

/// Settling (R4.7): a biased population fed by the input settles in the step that
/// integrates an input entry, or in a settle-only step when the frame is silent; an
/// early stop before the input entries are delivered leaves it due (its bias lost).
#[test]
fn settling_with_input_entries() {
    let n = net(
        1,
        vec![
            pop_v2(1, 0.5, 0.0, 0.375, ResetMode::Zero),
            pop(1, 0.5, 0.0),
        ],
        vec![dense(0, 1, vec![0.25]), dense(1, 2, vec![1.0])],
    );
    for s in [Scheduler::Layered, Scheduler::Fifo, Scheduler::Random] {
        // A silent frame: a settle-only step 1 settles A (0.375 < 0.5, no spike).
        let (r, trace) = traced(&n, &[0.0, 1.0], 2, &npi(s, 1));
        // t = 1: the input entry is delivered at the end of step 0, A settles in step
        // 1 with 0.25 + 0.375 > 0.5 and fires.
        assert_eq!(r.timestep_forward_steps, vec![2, 3], "{s:?}");
        assert_eq!(r.spikes, vec![1, 1], "{s:?}");
        assert_eq!(
            events(&trace, EventKind::Spike),
            vec![
                (1, 1, 1, 0, f64::from(0.0f32 * 0.0 + 0.25 + 0.375)),
                (1, 2, 2, 0, 1.0)
            ],
            "{s:?}"
        );
        // Prioritised: A settles at step 0 in both timesteps.
        let p = run_dense(&n, &[0.0, 1.0], 2, None, &cfg(s, 1));
        assert_eq!(p.timestep_forward_steps, vec![1, 2], "{s:?}");
        assert_eq!(p.spikes, r.spikes, "{s:?}");
    }
    // max_steps = 1: the input entry is dropped and A does not settle in the timestep.
    let config = RunConfig {
        max_steps: Some(1),
        ..npi(Scheduler::Fifo, 1)
    };
    let r = run_dense(&n, &[1.0, 1.0], 2, None, &config);
    assert_eq!(r.spikes, vec![0, 0]);
    assert_eq!(r.forward_steps, 2);
}

/// Input dropout (R4.10) draws as with prioritised input; only the kept values are
/// enqueued; dense and sparse inputs agree.
#[test]
fn input_dropout_and_sparse_input() {
    let n = three_into_one();
    let frames = [1.0, 2.0, 1.0, 0.0, 1.0, 1.0];
    for s in [Scheduler::Layered, Scheduler::Fifo, Scheduler::Random] {
        for p in [0.0, 0.5] {
            let config = RunConfig {
                input_dropout: p,
                seed: 3,
                ..npi(s, 2)
            };
            let prio = RunConfig {
                prioritize_input: true,
                ..config.clone()
            };
            let (r, trace) = traced(&n, &frames, 2, &config);
            let q = run_dense(&n, &frames, 2, None, &prio);
            assert_eq!(r.input_events, q.input_events, "{s:?} {p}");
            let entries = events(&trace, EventKind::Delivery)
                .iter()
                .filter(|e| e.2 == 0)
                .count();
            assert_eq!(entries as i64, r.input_events, "{s:?} {p}");
            let sparse = run_sample(
                &n,
                &SampleInput::Sparse {
                    t: &[1, 0, 0, 1, 0],
                    index: &[1, 0, 1, 2, 2],
                    value: &[1.0, 1.0, 2.0, 1.0, 1.0],
                    timesteps: 2,
                },
                None,
                0,
                &config,
            )
            .unwrap();
            assert_eq!(sparse, r, "{s:?} {p}");
        }
    }
}
