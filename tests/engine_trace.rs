//! The event trace of R7.10 from the Rust API: [`trace_batch`] gives the results of
//! `run_batch`, and its events agree with the counters of R7 (one input event per
//! `input_events`, one spike event per spike, one delivery per group member, in the
//! forward steps that `timestep_forward_steps` counts).

#[path = "support/nets.rs"]
mod nets;

use _engine::engine::{trace_batch, EventKind, TraceColumns, TraceEvent};
use _engine::{run_batch, Network, SampleInput, Scheduler};
use nets::*;

fn three_layers() -> Network {
    net(
        3,
        vec![pop(4, 0.4, 0.9), pop(3, 0.3, 0.8), pop(2, 0.5, 0.9)],
        vec![
            dense(0, 1, (0..12).map(|i| 0.1 + 0.05 * (i % 5) as f32).collect()),
            dense(1, 2, (0..12).map(|i| 0.2 + 0.07 * (i % 3) as f32).collect()),
            dense(2, 3, vec![0.6, 0.1, 0.2, 0.7, 0.5, 0.4]),
        ],
    )
}

fn frames(batch: usize, timesteps: usize) -> Vec<Vec<f32>> {
    (0..batch)
        .map(|b| {
            (0..timesteps * 3)
                .map(|i| ((b * 5 + i * 7) % 4) as f32 * 0.5)
                .collect()
        })
        .collect()
}

fn of_kind(events: &[TraceEvent], kind: EventKind) -> impl Iterator<Item = &TraceEvent> {
    events.iter().filter(move |e| e.kind == kind)
}

#[test]
fn trace_agrees_with_the_counters_on_every_scheduler() {
    let net = three_layers();
    let data = frames(6, 5);
    let inputs: Vec<SampleInput> = (data.iter())
        .map(|f| SampleInput::Dense {
            frames: f,
            timesteps: 5,
        })
        .collect();
    let ids: Vec<u64> = (0..6).collect();
    let cancel = Default::default();
    for s in ALL {
        for f in [1, 2, 8] {
            let config = cfg(s, f);
            let want = run_batch(&net, &inputs, None, &ids, &config, &cancel).unwrap();
            let (got, traces) =
                trace_batch(&net, &inputs, None, Some(&ids), &config, &cancel).unwrap();
            assert_eq!(got, want, "{s:?} F={f}");
            let mut spiked_any = false;
            for (r, events) in want.iter().zip(&traces) {
                let inputs = of_kind(events, EventKind::Input).count() as i64;
                assert_eq!(inputs, r.input_events, "{s:?} F={f}");
                for p in 0..3 {
                    let spikes = (of_kind(events, EventKind::Spike))
                        .filter(|e| e.population == p as u32 + 1)
                        .count() as i64;
                    assert_eq!(spikes, r.spikes[p], "{s:?} F={f} population {}", p + 1);
                    spiked_any |= spikes > 0;
                }
                // Every spike of a population with an outgoing projection is delivered
                // once (its multiplicity counts repeated spikes; no stop mode drops any).
                let delivered: f64 = of_kind(events, EventKind::Delivery).map(|e| e.value).sum();
                let enqueued = r.spikes[0] + r.spikes[1];
                assert_eq!(delivered as i64, enqueued, "{s:?} F={f}");
                for e in events {
                    let steps = r.timestep_forward_steps[e.timestep as usize];
                    assert!((e.step as i64) < steps, "{e:?} after the last step");
                    if e.kind == EventKind::Input {
                        assert_eq!(e.step, 0);
                    }
                }
                // The groups: at most F members (layered: one population) per step.
                let mut steps: Vec<(u32, u32)> = of_kind(events, EventKind::Delivery)
                    .map(|e| (e.timestep, e.step))
                    .collect();
                steps.dedup();
                for (t, k) in steps {
                    let group: Vec<&TraceEvent> = of_kind(events, EventKind::Delivery)
                        .filter(|e| (e.timestep, e.step) == (t, k))
                        .collect();
                    if s == Scheduler::Layered {
                        assert!(group.iter().all(|e| e.population == group[0].population));
                    } else {
                        assert!(group.len() <= f, "{s:?} F={f}: {} delivered", group.len());
                    }
                }
            }
            assert!(
                spiked_any,
                "the network must spike for this test to mean anything"
            );
        }
    }
}

#[test]
fn events_come_in_the_order_of_the_semantics() {
    let net = three_layers();
    let data = frames(2, 4);
    let inputs: Vec<SampleInput> = (data.iter())
        .map(|f| SampleInput::Dense {
            frames: f,
            timesteps: 4,
        })
        .collect();
    let (_, traces) = trace_batch(
        &net,
        &inputs,
        None,
        Some(&[7, 8]),
        &cfg(Scheduler::Fifo, 2),
        &Default::default(),
    )
    .unwrap();
    for events in &traces {
        // By (timestep, step); within a step: inputs, spikes, then the group.
        let rank = |e: &TraceEvent| match e.kind {
            EventKind::Input => 0,
            EventKind::Spike => 1,
            EventKind::Delivery => 2,
        };
        let key = |e: &TraceEvent| (e.timestep, e.step, rank(e), e.population, e.neuron);
        assert!(
            events.windows(2).all(|w| key(&w[0]) < key(&w[1])),
            "{events:?}"
        );
        // Inputs carry their values, spikes a membrane above threshold.
        for e in events {
            match e.kind {
                EventKind::Input => assert!(e.value > 0.0),
                EventKind::Spike => assert!(e.value > [0.4, 0.3, 0.5][e.population as usize - 1]),
                EventKind::Delivery => assert!(e.value >= 1.0),
            }
        }
    }
}

#[test]
fn columns_flatten_the_samples_in_order() {
    let net = three_layers();
    let data = frames(3, 3);
    let inputs: Vec<SampleInput> = (data.iter())
        .map(|f| SampleInput::Dense {
            frames: f,
            timesteps: 3,
        })
        .collect();
    let config = cfg(Scheduler::Random, 2);
    let (_, traces) = trace_batch(&net, &inputs, None, None, &config, &Default::default()).unwrap();
    let cols = TraceColumns::new(&traces);
    let n: usize = traces.iter().map(Vec::len).sum();
    assert!(n > 0);
    assert!(cols.ints.iter().all(|c| c.len() == n) && cols.value.len() == n);
    let mut row = 0;
    for (b, events) in traces.iter().enumerate() {
        for e in events {
            let want = [
                b as i64,
                e.timestep.into(),
                e.step.into(),
                e.kind.code(),
                e.population.into(),
                e.neuron.into(),
            ];
            let got: Vec<i64> = cols.ints.iter().map(|c| c[row]).collect();
            assert_eq!(got, want);
            assert_eq!(cols.value[row], e.value);
            row += 1;
        }
    }
    assert_eq!(TraceColumns::INT_NAMES[3], "kind");
    assert_eq!(EventKind::Spike.code(), 1);
}
