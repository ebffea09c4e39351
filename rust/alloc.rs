//! Fallible allocation of the buffers whose size comes from the network or the input
//! (populations, weights, timesteps, events): a size that cannot be reserved is an
//! [`EngineError::Memory`] naming the buffer and its size in bytes, never an abort.

use crate::error::{EngineError, Location};

/// An empty vector with room for `n` elements.
pub(crate) fn with_capacity<T>(
    n: usize,
    location: &Location,
    what: &str,
) -> Result<Vec<T>, EngineError> {
    let mut v = Vec::new();
    reserve(&mut v, n, location, what)?;
    Ok(v)
}

/// A vector of `n` copies of `fill`.
pub(crate) fn filled<T: Clone>(
    n: usize,
    fill: T,
    location: &Location,
    what: &str,
) -> Result<Vec<T>, EngineError> {
    let mut v = with_capacity(n, location, what)?;
    v.resize(n, fill);
    Ok(v)
}

/// Makes room for `additional` more elements in `v`.
pub(crate) fn reserve<T>(
    v: &mut Vec<T>,
    additional: usize,
    location: &Location,
    what: &str,
) -> Result<(), EngineError> {
    v.try_reserve_exact(additional).map_err(|_| {
        let bytes = (v.len() as u128 + additional as u128) * std::mem::size_of::<T>() as u128;
        EngineError::memory(location, what, bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_size_is_an_error_naming_it() {
        let e = filled(usize::MAX / 2, 0u64, &Location::Network, "per-neuron state").unwrap_err();
        assert_eq!(
            e,
            EngineError::Memory {
                location: Location::Network,
                what: "per-neuron state".into(),
                bytes: (usize::MAX / 2) as u128 * 8,
            }
        );
        assert_eq!(
            filled(3, 7u8, &Location::Batch, "y").unwrap(),
            vec![7, 7, 7]
        );
        let mut v = vec![1u32];
        assert!(reserve(&mut v, usize::MAX, &Location::Batch, "y").is_err());
        assert_eq!(v, vec![1]);
    }
}
