//! The output records of a forward step, written into the running rows' counter table:
//! the first output and first correct spike of the timestep (R7.7) and the running
//! prediction with the step at which it last changed (R7.9).
//!
//! The torch engine keeps one float64 counter table `[rows, C]` per running row set
//! (`asyncsnn.torch.engine.counters.CounterColumns`). After the fire phase of a step,
//! [`record_outputs`] reads the step's spikes as sorted flat positions `row * N +
//! neuron` and touches only the rows with an output spike. Every value it writes is an
//! integer (a step, a class, a count of spikes or synops) held exactly in float64, so
//! it is the same whatever the order of its sums.

use std::ops::Range;

use super::deliver::bad;
use super::pending::check_keys;
use crate::error::EngineError;

/// Where the records live in the counter table (`CounterColumns`).
#[derive(Clone, Debug, PartialEq)]
pub struct RecordColumns {
    /// Columns per row (`C`).
    pub width: usize,
    /// The synops of the timestep so far, one column per projection (R7.4).
    pub synops: Range<usize>,
    /// The first of the seven latency records of R7.7, in their order: first output
    /// step, class, spikes, synops; first correct step, spikes, synops.
    pub latency: usize,
    /// The first of the three decision records of R7.9: step, spikes, synops.
    pub decision: usize,
    /// The running prediction (-1: none yet).
    pub running: usize,
    /// The first of the output counts of the sample so far, one column per output neuron.
    pub totals: usize,
}

/// How the spikes of a row so far in the timestep are counted.
#[derive(Clone, Copy, Debug)]
pub enum Spent<'a> {
    /// The refractory mask `[rows, N]` (1.0 = not fired): each neuron fired at most once.
    Live(&'a [f32]),
    /// The spikes of each neuron `[rows, N]` (refractory dropout: a neuron may fire again).
    Fired(&'a [f32]),
}

/// The rows' state that the records read.
#[derive(Clone, Copy, Debug)]
pub struct RecordRows<'a> {
    /// Neurons per row (`N`); the output population is the columns `out_offset..N`.
    pub n_neu: usize,
    /// The first output neuron.
    pub out_offset: usize,
    /// The spikes so far in the timestep ([`Spent`]).
    pub spent: Spent<'a>,
    /// Deliveries of each neuron in the timestep so far, `[rows, N]`.
    pub delivered: &'a [f32],
    /// Synops of one delivery of each neuron (its fan-out over every projection), `[N]`.
    pub fanout: &'a [f64],
    /// The class of each row (`[rows]`, in `0..n_out`), for the first correct spike.
    pub labels: Option<&'a [i64]>,
    /// Whether each row's timestep has ended (`[rows]`).
    pub done: &'a [bool],
}

impl RecordRows<'_> {
    /// The number of rows.
    fn len(&self) -> usize {
        self.done.len()
    }

    /// The spikes (R7.1) and synops (R7.4) of row `r` in steps `0..=k` of the timestep.
    fn spent_so_far(&self, counters: &[f64], cols: &RecordColumns, r: usize) -> (f64, f64) {
        let row = r * self.n_neu..(r + 1) * self.n_neu;
        let spikes = match self.spent {
            Spent::Live(live) => {
                self.n_neu as f64 - live[row.clone()].iter().map(|&x| f64::from(x)).sum::<f64>()
            }
            Spent::Fired(fired) => fired[row.clone()].iter().map(|&x| f64::from(x)).sum(),
        };
        let input: f64 = counters[r * cols.width..][cols.synops.clone()].iter().sum();
        let delivered: f64 = self.delivered[row]
            .iter()
            .zip(self.fanout)
            .map(|(&d, &f)| f64::from(d) * f)
            .sum();
        (spikes, input + delivered)
    }
}

/// Checks every index that [`record_outputs`] will use: the table's shape and columns,
/// the rows' arrays, the labels in `0..n_out` and the positions `fired` in `[0, rows * N)`.
pub fn check_records(
    counters_len: usize,
    cols: &RecordColumns,
    rows: &RecordRows<'_>,
    latency_open_len: usize,
    fired: &[i64],
) -> Result<(), EngineError> {
    let (n, n_neu) = (rows.len(), rows.n_neu);
    if rows.out_offset >= n_neu {
        return Err(bad("out_offset", rows.out_offset, "must be below N"));
    }
    let n_out = n_neu - rows.out_offset;
    let ends = [
        ("synops", cols.synops.end),
        ("latency", cols.latency + 7),
        ("decision", cols.decision + 3),
        ("running", cols.running + 1),
        ("totals", cols.totals + n_out),
    ];
    if let Some((name, end)) = ends.iter().find(|(_, end)| *end > cols.width) {
        return Err(bad(name, end, "column past the counter table"));
    }
    if cols.synops.start > cols.synops.end {
        return Err(bad("synops", cols.synops.start, "empty range reversed"));
    }
    let sizes = [
        ("counters", counters_len, n * cols.width),
        ("latency_open", latency_open_len, n),
        ("spent", rows_spent_len(rows), n * n_neu),
        ("delivered", rows.delivered.len(), n * n_neu),
        ("fanout", rows.fanout.len(), n_neu),
        ("labels", rows.labels.map_or(n, <[i64]>::len), n),
    ];
    if let Some((name, got, want)) = sizes.iter().find(|(_, got, want)| got != want) {
        return Err(bad(name, got, &format!("expected {want} values")));
    }
    if let Some(&l) = rows
        .labels
        .and_then(|l| l.iter().find(|&&l| l < 0 || l >= n_out as i64))
    {
        return Err(bad("labels", l, &format!("must lie in [0, {n_out})")));
    }
    check_keys(fired, n, n_neu).map_err(|k| bad("fired", k, "position out of range"))?;
    if fired.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad(
            "fired",
            "unsorted",
            "positions must be sorted and distinct",
        ));
    }
    Ok(())
}

fn rows_spent_len(rows: &RecordRows<'_>) -> usize {
    match rows.spent {
        Spent::Live(a) | Spent::Fired(a) => a.len(),
    }
}

/// The records of forward step `k` (R7.7, R7.9), from its spikes `fired` (sorted flat
/// positions `row * N + neuron`; only the output neurons' are read).
///
/// Every row with an output spike adds it to its output counts (`totals`); where the
/// argmax of its counts (ties to the smallest index; -1 while all are 0) differs from
/// `running`, the step and the row's spikes and synops so far become its decision
/// records. With `latency`, each row without a first output spike yet records it
/// (step, the smallest output index spiking, spikes, synops), and with labels one whose
/// label spikes records its first correct spike; `latency_open` becomes 1.0 for the
/// rows that may still record one. Returns whether a running row (not `done`) may
/// still record a latency: `latency` itself when the step has no output spike or no
/// open row spiked (nothing is recorded then). [`check_records`] must pass first.
pub fn record_outputs(
    counters: &mut [f64],
    cols: &RecordColumns,
    rows: &RecordRows<'_>,
    latency_open: &mut [f32],
    fired: &[i64],
    k: usize,
    latency: bool,
) -> bool {
    let (n_neu, off) = (rows.n_neu as i64, rows.out_offset as i64);
    // (row, output index) of the step's output spikes, by row and index.
    let outs: Vec<(usize, usize)> = fired
        .iter()
        .filter(|&&f| f % n_neu >= off)
        .map(|&f| ((f / n_neu) as usize, (f % n_neu - off) as usize))
        .collect();
    if outs.is_empty() {
        return latency;
    }
    let step = k as f64;
    let mut open = latency;
    if latency && outs.iter().any(|&(r, _)| latency_open[r] > 0.0) {
        for group in outs.chunk_by(|a, b| a.0 == b.0) {
            let r = group[0].0;
            let row = &mut counters[r * cols.width..(r + 1) * cols.width];
            let new = row[cols.latency] < 0.0;
            let hit = rows.labels.is_some_and(|l| {
                row[cols.latency + 4] < 0.0 && group.iter().any(|&(_, j)| j as i64 == l[r])
            });
            if new || hit {
                let (spikes, synops) = rows.spent_so_far(counters, cols, r);
                let row = &mut counters[r * cols.width..(r + 1) * cols.width];
                if new {
                    let first = group[0].1 as f64; // the smallest index spiking
                    row[cols.latency..cols.latency + 4]
                        .copy_from_slice(&[step, first, spikes, synops]);
                }
                if hit {
                    row[cols.latency + 4..cols.latency + 7]
                        .copy_from_slice(&[step, spikes, synops]);
                }
            }
        }
        open = false;
        for r in 0..rows.len() {
            let row = &counters[r * cols.width..(r + 1) * cols.width];
            let still =
                row[cols.latency] < 0.0 || (rows.labels.is_some() && row[cols.latency + 4] < 0.0);
            latency_open[r] = if still { 1.0 } else { 0.0 };
            open |= still && !rows.done[r];
        }
    }
    for group in outs.chunk_by(|a, b| a.0 == b.0) {
        let r = group[0].0;
        let row = &mut counters[r * cols.width..(r + 1) * cols.width];
        let totals = &mut row[cols.totals..cols.totals + rows.n_neu - rows.out_offset];
        for &(_, j) in group {
            totals[j] += 1.0;
        }
        // The first maximum; -1 while every count is 0.
        let (best, top) = totals
            .iter()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |acc, (j, &c)| if c > acc.1 { (j, c) } else { acc },
            );
        let now = if top > 0.0 { best as f64 } else { -1.0 };
        if now != row[cols.running] {
            row[cols.running] = now;
            let (spikes, synops) = rows.spent_so_far(counters, cols, r);
            let row = &mut counters[r * cols.width..(r + 1) * cols.width];
            row[cols.decision..cols.decision + 3].copy_from_slice(&[step, spikes, synops]);
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train_kernels::tests::field;

    /// Two projections, two output neurons: columns synops 0..2, latency 2..9,
    /// decision 9..12, running 12, totals 13..15.
    fn cols() -> RecordColumns {
        RecordColumns {
            width: 15,
            synops: 0..2,
            latency: 2,
            decision: 9,
            running: 12,
            totals: 13,
        }
    }

    /// Two rows of a 4-neuron network whose outputs are neurons 2 and 3.
    fn table() -> Vec<f64> {
        let mut row = vec![0.0; 15];
        row[0] = 5.0; // input synops so far
        row[2..9].fill(-1.0);
        row[9..12].fill(-1.0);
        row[12] = -1.0;
        [row.clone(), row].concat()
    }

    const LIVE: [f32; 8] = [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0];
    const DELIVERED: [f32; 8] = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    const FANOUT: [f64; 4] = [3.0, 3.0, 0.0, 0.0];

    /// [`record_outputs`] on the columns of [`cols`].
    fn rec(
        cnt: &mut [f64],
        r: &RecordRows<'_>,
        open: &mut [f32],
        fired: &[i64],
        k: usize,
        latency: bool,
    ) -> bool {
        record_outputs(cnt, &cols(), r, open, fired, k, latency)
    }

    fn rows<'a>(labels: Option<&'a [i64]>, done: &'a [bool]) -> RecordRows<'a> {
        RecordRows {
            n_neu: 4,
            out_offset: 2,
            spent: Spent::Live(&LIVE),
            delivered: &DELIVERED,
            fanout: &FANOUT,
            labels,
            done,
        }
    }

    #[test]
    fn a_first_output_spike_records_latency_and_decision() {
        let (mut cnt, mut open) = (table(), [1.0f32, 1.0]);
        let labels = [1i64, 0];
        let r = rows(Some(&labels), &[false, false]);
        // Row 0 fires output 0 (neuron 2), row 1 output 1 (neuron 7 = row 1, neuron 3).
        let fired = [0i64, 2, 7];
        check_records(cnt.len(), &cols(), &r, 2, &fired).unwrap();
        assert!(rec(&mut cnt, &r, &mut open, &fired, 3, true));
        // Row 0: 2 spikes (live 0 at neurons 0, 2), synops 5 + 1 * 3; wrong class.
        assert_eq!(&cnt[2..9], &[3.0, 0.0, 2.0, 8.0, -1.0, -1.0, -1.0]);
        assert_eq!(&cnt[9..15], &[3.0, 2.0, 8.0, 0.0, 1.0, 0.0]);
        // Row 1: 1 spike, 5 synops; class 1 is not its label 0 either.
        assert_eq!(
            &cnt[15 + 2..15 + 9],
            &[3.0, 1.0, 1.0, 5.0, -1.0, -1.0, -1.0]
        );
        assert_eq!(&cnt[15 + 12..], &[1.0, 0.0, 1.0]);
        assert_eq!(open, [1.0, 1.0]);
        // Step 4: row 0 fires its label: the first correct spike; the latency closes.
        assert!(rec(&mut cnt, &r, &mut open, &[3], 4, true));
        assert_eq!(&cnt[6..9], &[4.0, 2.0, 8.0]);
        assert_eq!(open, [0.0, 1.0]);
        // A tie (1, 1) keeps class 0, the first maximum: no new decision.
        assert_eq!(&cnt[9..13], &[3.0, 2.0, 8.0, 0.0]);
        // A spike of a closed row records nothing (and reports the latency still open).
        let before = cnt.clone();
        assert!(rec(&mut cnt, &r, &mut open, &[2], 5, true));
        assert_eq!(&cnt[..15], &[&before[..13], &[2.0, 1.0]].concat()[..]);
        // Row 1 fires its label: every row is closed.
        assert!(!rec(&mut cnt, &r, &mut open, &[6], 6, true));
        assert_eq!(&cnt[15 + 6..15 + 9], &[6.0, 1.0, 5.0]);
        assert_eq!(open, [0.0, 0.0]);
        // Only a row whose timestep has ended is still open: nothing to record any more.
        let (mut cnt, mut open) = (table(), [1.0f32, 1.0]);
        let r = rows(None, &[true, false]);
        assert!(!rec(&mut cnt, &r, &mut open, &[7], 0, true));
        assert_eq!(open, [1.0, 0.0]);
    }

    #[test]
    fn without_output_spikes_nothing_changes() {
        let (mut cnt, mut open) = (table(), [1.0f32, 1.0]);
        let r = rows(None, &[false, false]);
        let before = cnt.clone();
        assert!(rec(&mut cnt, &r, &mut open, &[0, 4], 0, true));
        assert!(!rec(&mut cnt, &r, &mut open, &[0, 4], 0, false));
        assert_eq!(cnt, before);
        // Without the latency records, only the decision is recorded.
        assert!(!rec(&mut cnt, &r, &mut open, &[3], 1, false));
        assert_eq!(&cnt[2..9], &before[2..9]);
        assert_eq!(&cnt[9..15], &[1.0, 2.0, 8.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn fired_spike_counts_are_summed() {
        let (mut cnt, mut open) = (table(), [1.0f32, 1.0]);
        let fired_counts = [2.0f32, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let mut r = rows(None, &[false, false]);
        r.spent = Spent::Fired(&fired_counts);
        rec(&mut cnt, &r, &mut open, &[2], 0, true);
        assert_eq!(&cnt[2..6], &[0.0, 0.0, 3.0, 8.0]);
    }

    #[test]
    fn checks_name_the_bad_argument() {
        let cnt = table();
        let done = [false, false];
        let ok = rows(None, &done);
        let check = |c: &RecordColumns, r: &RecordRows<'_>, fired: &[i64]| {
            check_records(cnt.len(), c, r, 2, fired)
        };
        assert_eq!(field(check(&cols(), &ok, &[8])), "fired");
        assert_eq!(field(check(&cols(), &ok, &[3, 1])), "fired");
        let wide = RecordColumns {
            totals: 14,
            ..cols()
        };
        assert_eq!(field(check(&wide, &ok, &[])), "totals");
        let labels = [0i64, 2];
        assert_eq!(
            field(check(&cols(), &rows(Some(&labels), &done), &[])),
            "labels"
        );
        let mut short = ok;
        short.fanout = &FANOUT[..3];
        assert_eq!(field(check(&cols(), &short, &[])), "fanout");
        let mut off = ok;
        off.out_offset = 4;
        assert_eq!(field(check(&cols(), &off, &[])), "out_offset");
        assert!(check(&cols(), &ok, &[0, 7]).is_ok());
    }
}
