//! Shared helpers for the integration tests: a deterministic PRNG, the test
//! distributions, exact quantiles and a strict Prometheus text-format parser.
#![allow(dead_code, unreachable_pub, reason = "each test binary uses a subset")]

pub mod promtext;

/// SplitMix64: small, fast, deterministic; good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Log-normal with the given median and log-space sigma.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// LLM-like latency in seconds: 95% fast answers around 0.5 s, 5% long
    /// generations around 5.5 s. Mean ≈ 0.8 s, p99 ≈ 7 s.
    pub fn llm_latency(&mut self) -> f64 {
        if self.unit() < 0.95 {
            self.lognormal(0.5, 0.4)
        } else {
            self.lognormal(5.5, 0.3)
        }
    }
}

/// Exact quantile by nearest rank: `ceil(q n) - 1`.
pub fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize)
        .saturating_sub(1)
        .min(sorted.len() - 1);
    sorted[rank]
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}
