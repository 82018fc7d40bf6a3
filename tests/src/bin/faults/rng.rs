//! A tiny deterministic PRNG (SplitMix64), so the harness needs no `rand` dependency and a
//! lifecycle replays bit for bit from `(seed, index)` on any machine and thread count.
//!
//! Every lifecycle has independent streams (scenario drawing, fault decisions), so adding a
//! fault draw never shifts what order or document history a seed produces.

/// SplitMix64 (Steele, Lea, Flood 2014; the seeding generator of xoshiro). Not cryptographic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

/// One SplitMix64 output step as a pure function: a good 64-bit mixer.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stream ids of one lifecycle.
pub const STREAM_SCENARIO: u64 = 1;
pub const STREAM_FAULTS: u64 = 2;
/// Authorization age and operator (hands-off) draws.
pub const STREAM_OPERATOR: u64 = 3;

impl Rng {
    /// The generator of one stream of lifecycle `index` under run seed `seed`.
    pub fn for_lifecycle(seed: u64, index: u64, stream: u64) -> Rng {
        Rng(mix(mix(seed)
            ^ mix(index.wrapping_mul(0xD1B5_4A32_D192_ED03))
            ^ mix(stream)))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is below 2^-40 for the small `n` used here).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo) as u64 + 1;
        lo + self.below(span) as i64
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// An index chosen with the given relative weights (at least one must be positive).
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut r = self.below(total.max(1));
        for (i, w) in weights.iter().enumerate() {
            if r < *w {
                return i;
            }
            r -= w;
        }
        weights.len() - 1
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = {
            let mut r = Rng::for_lifecycle(42, 7, STREAM_FAULTS);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::for_lifecycle(42, 7, STREAM_FAULTS);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::for_lifecycle(42, 7, STREAM_SCENARIO);
            (0..4).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = Rng::for_lifecycle(1, 2, 3);
        for _ in 0..1000 {
            let x = r.range(-3, 5);
            assert!((-3..=5).contains(&x));
        }
    }
}
