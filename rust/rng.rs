//! The shared counter-based random function of R5.5.
//!
//! All randomness of a run is a pure function of
//! `(seed, sample, t, k, neuron, stream)`, identical in every engine and independent of
//! batch order, thread count and platform.

/// Stream of the `random` scheduler keys (R5.3).
pub const STREAM_RANDOM: u32 = 0;
/// Stream of the refractory dropout draws (R4.6).
pub const STREAM_DROPOUT: u32 = 1;
/// Stream of the momentum jitter draws (R5.4).
pub const STREAM_JITTER: u32 = 2;
/// Stream of the input dropout draws (R4.10).
pub const STREAM_INPUT_DROPOUT: u32 = 3;
/// Stream of the spike dropout draws (R4.11).
pub const STREAM_SPIKE_DROPOUT: u32 = 4;
/// Stream of the `random` scheduler keys of input entries (R4.13).
pub const STREAM_RANDOM_INPUT: u32 = 5;

const H0: u32 = 0x243F_6A88;

/// The 32-bit finaliser `mix32` of R5.5 (all arithmetic modulo 2^32).
#[inline(always)]
pub fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x21F0_AAAD);
    x ^= x >> 15;
    x = x.wrapping_mul(0x735A_2D97);
    x ^= x >> 15;
    x
}

/// `h(seed, sample, t, k, neuron, stream)` of R5.5.
#[inline]
pub fn hash(seed: u64, sample: u32, t: u32, k: u32, neuron: u32, stream: u32) -> u32 {
    hash_finish(hash_prefix(seed, sample, t, k), neuron, stream)
}

/// `u(...) = (h(...) >> 8) / 2^24` of R5.5, in `[0, 1)`, exact in float32.
#[inline]
pub fn uniform(seed: u64, sample: u32, t: u32, k: u32, neuron: u32, stream: u32) -> f32 {
    to_uniform(hash(seed, sample, t, k, neuron, stream))
}

/// The state of [`hash`] after absorbing `(seed, sample, t, k)`: the part shared by all
/// neurons of one forward step (an optimisation; `hash_finish(hash_prefix(..), n, s)`
/// equals `hash(.., n, s)`).
#[inline]
pub fn hash_prefix(seed: u64, sample: u32, t: u32, k: u32) -> u32 {
    let mut x = H0;
    for w in [seed as u32, (seed >> 32) as u32, sample, t, k] {
        x = mix32(x ^ w);
    }
    x
}

/// Finishes a [`hash_prefix`] state with `neuron` and `stream`.
#[inline(always)]
pub fn hash_finish(prefix: u32, neuron: u32, stream: u32) -> u32 {
    mix32(mix32(prefix ^ neuron) ^ stream)
}

/// Converts a hash value to `u = (h >> 8) / 2^24` (R5.5).
#[inline(always)]
pub fn to_uniform(h: u32) -> f32 {
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// A xorshift64 stream for the crate's unit tests (test inputs only; not R5.5).
#[cfg(test)]
pub(crate) fn test_stream(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vectors of the table in R5.5.
    #[test]
    fn r5_5_test_vectors() {
        // (seed, sample, t, k, neuron, stream, h, u); u exact as printed (float64).
        type Row = (u64, u32, u32, u32, u32, u32, u32, f64);
        let rows: [Row; 6] = [
            (0, 0, 0, 0, 0, 0, 3433141362, 0.7993404865264893),
            (0, 0, 0, 0, 0, 1, 3422389651, 0.7968371510505676),
            (1, 0, 0, 0, 0, 0, 2498379101, 0.5816991925239563),
            (42, 3, 7, 2, 100, 0, 643818531, 0.1499006748199463),
            (
                u64::MAX,
                u32::MAX,
                u32::MAX,
                u32::MAX,
                u32::MAX,
                2,
                1525704551,
                0.35523074865341187,
            ),
            (
                123456789012345,
                17,
                5,
                11,
                65,
                1,
                3783100989,
                0.8808218240737915,
            ),
        ];
        for (seed, sample, t, k, n, s, h, u) in rows {
            assert_eq!(
                hash(seed, sample, t, k, n, s),
                h,
                "h{:?}",
                (seed, sample, t, k, n, s)
            );
            // u is exact in float32: the f32 and the printed f64 value are equal.
            assert_eq!(u as f32 as f64, u);
            assert_eq!(
                uniform(seed, sample, t, k, n, s) as f64,
                u,
                "u{:?}",
                (seed, sample, t, k, n, s)
            );
            assert_eq!(
                hash_finish(hash_prefix(seed, sample, t, k), n, s),
                h,
                "prefix form"
            );
        }
        assert_eq!(hash(0, 0, 0, 0, 0, 0), 0xcca1_9472);
        assert_eq!(hash(42, 3, 7, 2, 100, 0), 0x265f_e423);
    }

    #[test]
    fn uniform_range() {
        assert_eq!(to_uniform(0), 0.0);
        assert!(to_uniform(u32::MAX) < 1.0);
        assert_eq!(to_uniform(u32::MAX), 16_777_215.0 / 16_777_216.0);
    }
}
