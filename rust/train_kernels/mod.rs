//! Kernels of the torch engine's CPU path (float32), the training engine.
//!
//! The torch engine (`python/asyncsnn/torch/engine/`) runs the semantics of
//! docs/semantics.md vectorised over a batch, under autograd (section 9). One forward
//! step is a handful of element-wise operations on `[rows, N]` tensors and a few
//! gathers and scatters over the delivered entries; on the CPU, the launches of those
//! torch kernels cost more than their arithmetic. The functions here do the same
//! float32 operations, element by element in the same order, in one pass each:
//!
//! * [`step`]: the forward step, [`step_forward`]: integrate, fire, reset and enqueue
//!   (R4.3.1-R4.3.2), with the refractory mask, the momentum keys and the positions of
//!   the spikes; [`step_backward`]: the gradient of a step whose surrogate terms are
//!   kept for the neurons that fired only;
//! * [`deliver`]: [`deliver_forward`] takes the selected entries out of the pending
//!   values and adds their weight-table rows into the currents (R4.3.4);
//!   [`deliver_backward`] is its gradient;
//! * [`pending`]: [`merge_pending`] and [`select_pending`], the unlayered schedulers'
//!   bookkeeping of the pending set of every row (R3.2, R4.3.2, R4.3.4, R5.2-R5.4);
//! * [`records`]: [`record_outputs`], the latency and decision records of a step's
//!   output spikes (R7.7, R7.9);
//! * [`silent`]: [`silent_grad`], the backward pass of the silent spikes of one
//!   population (section 9);
//! * [`tape`]: [`tape_backward`], the backward pass of a whole unlayered run from the
//!   inference engine's tape of it (events and membranes), sample by sample.
//!
//! Each kernel has a check of its arguments (`check_*`, [`StepInputs::check`],
//! [`StepGrads::check`], [`SelectKeys::new`], [`check_records`], [`check_silent`]) that returns an [`crate::EngineError`]
//! naming the bad argument, so that the kernel itself cannot index out of bounds.
//!
//! They are not the inference engine: `engine/` runs one sample as an event loop;
//! these are the torch engine's batch operations (its "host" backend), and the torch
//! engine's equivalence tests run its two backends, with and without them, against
//! the reference engine. The Python side is `asyncsnn.torch._kernels` (autograd
//! functions), through the binding in `rust/python/train_kernels.rs`.

pub mod deliver;
pub mod pending;
pub mod records;
pub mod silent;
pub mod step;
pub mod tape;

pub use deliver::{
    check_deliver, check_deliver_forward, deliver_backward, deliver_forward, DeliverLayout,
};
pub use pending::{
    check_keys, check_merge, check_pending, merge_pending, select_pending, Pending, SelectKeys,
    Selection,
};
pub use records::{check_records, record_outputs, RecordColumns, RecordRows, Spent};
pub use silent::{check_silent, silent_grad, SilentBlock, SilentReset, SurrogateFn};
pub use step::{step_backward, step_forward, Fired, StepGrads, StepInputs, StepOutputs};
pub use tape::{check_tape, tape_backward, tape_backward_batch, TapeOptions, TAPE_CHUNK};

#[cfg(test)]
pub(crate) mod tests {
    use crate::error::EngineError;

    /// The field named by the parameter error of a failed check.
    pub(crate) fn field<T: std::fmt::Debug>(r: Result<T, EngineError>) -> String {
        match r {
            Err(EngineError::Parameter { field, .. }) => field,
            other => panic!("not a parameter error: {other:?}"),
        }
    }
}
