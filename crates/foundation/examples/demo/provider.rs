//! A simulated AI provider that enforces requests-per-minute and
//! tokens-per-minute the way OpenAI documents it: continuously refilling
//! buckets of `limit` per minute, tokens counted at admission as the prompt
//! plus `max_tokens`, `429` with `retry-after`/`retry-after-ms` when a bucket
//! is short, and `x-ratelimit-*` headers on every response.
//!
//! It runs on tokio's clock, so under paused time minutes pass in
//! milliseconds. Other demo parts can reuse it (`Provider::new(rpm, tpm)`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// One continuously refilling bucket (floating point, on purpose a
/// different implementation from the limiter's integer GCRA).
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    level: f64,
    per_sec: f64,
    last: Instant,
}

impl Bucket {
    fn new(per_minute: u64, now: Instant) -> Self {
        Self {
            capacity: per_minute as f64,
            level: per_minute as f64,
            per_sec: per_minute as f64 / 60.0,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level + dt * self.per_sec).min(self.capacity);
        self.last = now;
    }

    /// Time until `amount` fits.
    fn wait_for(&self, amount: f64) -> Duration {
        if amount <= self.level {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((amount - self.level) / self.per_sec)
        }
    }

    fn until_full(&self) -> Duration {
        Duration::from_secs_f64((self.capacity - self.level) / self.per_sec)
    }
}

/// What the provider admitted and refused so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProviderStats {
    pub(crate) admitted_requests: u64,
    pub(crate) admitted_tokens: u64,
    pub(crate) rejected_429: u64,
    pub(crate) first_admission: Option<Instant>,
    pub(crate) last_admission: Option<Instant>,
}

#[derive(Debug)]
struct State {
    requests: Bucket,
    tokens: Bucket,
    stats: ProviderStats,
}

/// A response: status, headers, and (on 200) the tokens actually used.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) used_tokens: u64,
}

/// The simulated provider; clones share its buckets.
#[derive(Debug, Clone)]
pub(crate) struct Provider {
    rpm: u64,
    tpm: u64,
    latency: Duration,
    state: Arc<Mutex<State>>,
}

impl Provider {
    /// A provider allowing `rpm` requests and `tpm` tokens per minute.
    pub(crate) fn new(rpm: u64, tpm: u64) -> Self {
        let now = Instant::now();
        Self {
            rpm,
            tpm,
            latency: Duration::from_millis(800),
            state: Arc::new(Mutex::new(State {
                requests: Bucket::new(rpm, now),
                tokens: Bucket::new(tpm, now),
                stats: ProviderStats::default(),
            })),
        }
    }

    /// The tokens-per-minute limit.
    pub(crate) fn tpm(&self) -> u64 {
        self.tpm
    }

    /// Sends one completion request; the rate decision is made on arrival,
    /// the answer comes after the provider's latency.
    pub(crate) async fn complete(&self, prompt_tokens: u64, max_tokens: u64) -> Response {
        let estimated = (prompt_tokens + max_tokens) as f64;
        let now = Instant::now();
        let (admitted, headers) = {
            let mut s = self.state.lock().unwrap();
            s.requests.refill(now);
            s.tokens.refill(now);
            let wait = s.requests.wait_for(1.0).max(s.tokens.wait_for(estimated));
            let admitted = wait.is_zero();
            if admitted {
                s.requests.level -= 1.0;
                s.tokens.level -= estimated;
                s.stats.admitted_requests += 1;
                s.stats.admitted_tokens += prompt_tokens + max_tokens;
                s.stats.first_admission.get_or_insert(now);
                s.stats.last_admission = Some(now);
            } else {
                s.stats.rejected_429 += 1;
            }
            let mut headers = vec![
                (
                    "x-ratelimit-limit-requests".to_owned(),
                    self.rpm.to_string(),
                ),
                ("x-ratelimit-limit-tokens".to_owned(), self.tpm.to_string()),
                (
                    "x-ratelimit-remaining-requests".to_owned(),
                    (s.requests.level.max(0.0).floor() as u64).to_string(),
                ),
                (
                    "x-ratelimit-remaining-tokens".to_owned(),
                    (s.tokens.level.max(0.0).floor() as u64).to_string(),
                ),
                (
                    "x-ratelimit-reset-requests".to_owned(),
                    format!("{}ms", s.requests.until_full().as_millis()),
                ),
                (
                    "x-ratelimit-reset-tokens".to_owned(),
                    format!("{}ms", s.tokens.until_full().as_millis()),
                ),
            ];
            if !admitted {
                headers.push((
                    "retry-after".to_owned(),
                    wait.as_secs_f64().ceil().to_string(),
                ));
                headers.push((
                    "retry-after-ms".to_owned(),
                    wait.as_millis().max(1).to_string(),
                ));
            }
            (admitted, headers)
        };
        if !admitted {
            return Response {
                status: 429,
                headers,
                used_tokens: 0,
            };
        }
        tokio::time::sleep(self.latency).await;
        Response {
            status: 200,
            headers,
            // The model stops before max_tokens most of the time.
            used_tokens: prompt_tokens + max_tokens * 2 / 3,
        }
    }

    /// The provider's counters so far.
    pub(crate) fn stats(&self) -> ProviderStats {
        self.state.lock().unwrap().stats.clone()
    }

    /// The most tokens it could have admitted between its first and last
    /// admission: a full bucket plus the refill over that span.
    pub(crate) fn token_capacity_used_span(&self) -> f64 {
        let s = self.stats();
        match (s.first_admission, s.last_admission) {
            (Some(a), Some(b)) => self.tpm as f64 + (b - a).as_secs_f64() * self.tpm as f64 / 60.0,
            _ => self.tpm as f64,
        }
    }
}
