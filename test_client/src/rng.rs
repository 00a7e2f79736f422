//! A small seeded PRNG (SplitMix64): the bots' only source of randomness.
//!
//! `main` seeds it from the pid and the clock; the bot logic takes it as an argument, so tests
//! run with a fixed seed and are deterministic. Not for cryptography.

/// SplitMix64 (Steele, Lea, Flood 2014): one u64 of state, full period, good enough mixing
/// for picking gates, delays and jitters.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed` (any value, including 0).
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`; 0 when `n` is 0. (Multiply-shift: bias below 2^-32 for our `n`.)
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        for _ in 0..1000 {
            let f = a.f32();
            assert!((0.0..1.0).contains(&f));
            assert!(a.below(6) < 6);
        }
        assert_eq!(Rng::new(0).below(0), 0);
        // Every value of a small range shows up.
        let mut seen = [false; 6];
        for _ in 0..200 {
            seen[a.below(6) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
