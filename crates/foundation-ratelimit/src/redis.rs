//! Multi-node limits on a Redis server: the same multi-dimension GCRA, decided
//! atomically by one Lua script per decision.
//!
//! Every limiter instance (in any process) built with the same `key_prefix`
//! and configuration shares one quota. Each decision is one `EVALSHA` of
//! [`SCRIPT`]: it reads the server's clock (`TIME`, so processes need no
//! synchronized clocks), checks every dimension, and either charges all of
//! them or none — Redis runs scripts atomically, so there is nothing to roll
//! back. Keys are `{prefix}:<dimension>` (the hash tag keeps one limiter's
//! keys in one cluster slot) and expire when their bucket is full again, so
//! idle limiters cost no memory.
//!
//! Differences from the in-process [`RateLimiter`](crate::RateLimiter),
//! stated plainly:
//! - waiting ([`acquire_within`](RedisRateLimiter::acquire_within)) sleeps
//!   for the server's predicted wait and retries; there is no FIFO queue
//!   across processes (use a local limiter in front for local fairness);
//! - the concurrency dimension is not shared (it is ignored here), and
//!   server feedback (`observe`) applies to in-process limiters only: put a
//!   local [`RateLimiter`](crate::RateLimiter) fed by the headers in front
//!   when you need both;
//! - times are microseconds in Lua doubles: decisions are exact to well
//!   under a microsecond.
//!
//! ```no_run
//! use foundation_ratelimit::redis::RedisRateLimiter;
//! use foundation_ratelimit::{Charge, DimensionConfig, LimiterConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = redis::Client::open("redis://127.0.0.1:6379/")?;
//! let conn = client.get_multiplexed_async_connection().await?;
//! let cfg = LimiterConfig::new()
//!     .with_dimension(DimensionConfig::per_minute("requests", 500))
//!     .with_dimension(DimensionConfig::per_minute("tokens", 200_000));
//! let limiter = RedisRateLimiter::new(conn, "openai:org-1", cfg)?;
//! let mut permit = limiter.try_acquire(Charge::from([1, 4_000])).await?;
//! permit.reconcile(Charge::from([1, 1_250])).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use foundation_core::Validate;
use redis::aio::MultiplexedConnection;

use crate::charge::Charge;
use crate::config::LimiterConfig;
use crate::error::{AcquireError, ConfigError};
use crate::gcra::Gcra;

/// The decision script. `ARGV[1]` is the mode (`acquire` or `adjust`); then
/// per key: interval (µs per unit), tau (µs), amount (units; signed for
/// `adjust`). Returns `{admitted, denying dimension (1-based), retry after µs}`.
pub const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local mode = ARGV[1]
local n = #KEYS
local tats = {}
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  local tat = now
  if v then tat = math.max(tonumber(v), now) end
  local interval = tonumber(ARGV[2 + (i - 1) * 3])
  local tau = tonumber(ARGV[3 + (i - 1) * 3])
  local amount = tonumber(ARGV[4 + (i - 1) * 3])
  if mode == 'acquire' then
    if amount > 0 then
      local nt = tat + amount * interval
      if nt - tau > now then
        return {0, i, math.ceil(nt - tau - now)}
      end
      tats[i] = nt
    end
  elseif amount ~= 0 then
    tats[i] = math.max(now, tat + amount * interval)
  end
end
for i = 1, n do
  if tats[i] then
    local ttl = math.ceil((tats[i] - now) / 1000) + 1
    redis.call('SET', KEYS[i], string.format('%.3f', tats[i]), 'PX', ttl)
  end
end
return {1, 0, 0}
";

/// A limiter whose state lives on a Redis server, shared by every instance
/// with the same key prefix. Clones share the connection.
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<RedisInner>,
}

struct RedisInner {
    conn: MultiplexedConnection,
    script: redis::Script,
    keys: Vec<String>,
    names: Vec<Arc<str>>,
    params: Vec<Gcra>,
}

/// A permit from a [`RedisRateLimiter`]; settle it with [`reconcile`](Self::reconcile).
#[derive(Debug)]
#[must_use = "reconcile the permit when the real usage is known"]
pub struct RedisPermit {
    limiter: RedisRateLimiter,
    charged: Charge,
}

// === impl RedisRateLimiter ===

impl RedisRateLimiter {
    /// A limiter sharing state under `key_prefix` on the connection's server.
    /// Instances that share a prefix must share the configuration.
    ///
    /// # Errors
    /// The configuration's validation errors.
    pub fn new(
        conn: MultiplexedConnection,
        key_prefix: &str,
        config: LimiterConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut params = Vec::new();
        for (i, d) in config.dimensions.iter().enumerate() {
            params.push(d.gcra().ok_or_else(|| {
                foundation_core::ValidationErrors::single(
                    foundation_core::FieldPath::from("dimensions")
                        .index(i)
                        .field("period"),
                    "out of range",
                )
            })?);
        }
        Ok(Self {
            inner: Arc::new(RedisInner {
                conn,
                script: redis::Script::new(SCRIPT),
                keys: config
                    .dimensions
                    .iter()
                    .map(|d| format!("{{{key_prefix}}}:{}", d.name))
                    .collect(),
                names: config
                    .dimensions
                    .iter()
                    .map(|d| Arc::from(d.name.as_str()))
                    .collect(),
                params,
            }),
        })
    }

    async fn run(
        &self,
        mode: &str,
        amounts: &[i128],
    ) -> Result<(bool, usize, Duration), AcquireError> {
        let mut inv = self.inner.script.prepare_invoke();
        inv.arg(mode);
        for (i, key) in self.inner.keys.iter().enumerate() {
            let g = &self.inner.params[i];
            // Interval in µs as a decimal string: exact enough for Lua doubles.
            let interval_us = g.interval_q as f64 / 1024.0 / 1_000.0;
            let tau_us = g.tau as f64 / 1_000.0;
            inv.key(key)
                .arg(interval_us)
                .arg(tau_us)
                .arg(amounts.get(i).copied().unwrap_or(0).to_string());
        }
        let mut conn = self.inner.conn.clone();
        let (ok, dim, wait_us): (i64, i64, i64) = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| AcquireError::Backend(e.to_string()))?;
        Ok((
            ok == 1,
            usize::try_from(dim).unwrap_or(0),
            Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
        ))
    }

    fn check_burst(&self, charge: &Charge) -> Result<(), AcquireError> {
        for (i, g) in self.inner.params.iter().enumerate() {
            if charge.get(i) > g.burst {
                return Err(AcquireError::ExceedsBurst {
                    dimension: self.inner.names[i].clone(),
                    cost: charge.get(i),
                    burst: g.burst,
                });
            }
        }
        Ok(())
    }

    /// Charges every dimension now if all admit `charge`, atomically across
    /// every instance sharing the prefix.
    ///
    /// # Errors
    /// [`AcquireError::RateLimited`] with the server's predicted wait,
    /// [`AcquireError::ExceedsBurst`], or [`AcquireError::Backend`].
    pub async fn try_acquire(&self, charge: Charge) -> Result<RedisPermit, AcquireError> {
        self.check_burst(&charge)?;
        let amounts: Vec<i128> = (0..self.inner.keys.len())
            .map(|i| i128::from(charge.get(i)))
            .collect();
        let (ok, dim, wait) = self.run("acquire", &amounts).await?;
        if ok {
            return Ok(RedisPermit {
                limiter: self.clone(),
                charged: charge,
            });
        }
        let dimension = self
            .inner
            .names
            .get(dim.saturating_sub(1))
            .cloned()
            .unwrap_or_else(|| Arc::from("unknown"));
        Err(AcquireError::RateLimited {
            dimension,
            retry_after: wait,
        })
    }

    /// Retries [`try_acquire`](Self::try_acquire) after each predicted wait
    /// until admitted, failing fast when a predicted wait would end past
    /// `deadline`. Not FIFO across processes.
    ///
    /// # Errors
    /// [`AcquireError::WouldExceedDeadline`], plus those of `try_acquire`.
    pub async fn acquire_within(
        &self,
        charge: Charge,
        deadline: Duration,
    ) -> Result<RedisPermit, AcquireError> {
        let start = tokio::time::Instant::now();
        loop {
            match self.try_acquire(charge).await {
                Err(AcquireError::RateLimited { retry_after, .. }) => {
                    let predicted = start.elapsed() + retry_after;
                    if predicted > deadline {
                        return Err(AcquireError::WouldExceedDeadline {
                            predicted,
                            deadline,
                        });
                    }
                    tokio::time::sleep(retry_after).await;
                }
                other => return other,
            }
        }
    }
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("keys", &self.inner.keys)
            .finish_non_exhaustive()
    }
}

// === impl RedisPermit ===

impl RedisPermit {
    /// What this permit has charged so far.
    #[must_use]
    pub fn charged(&self) -> Charge {
        self.charged
    }

    /// Settles the charge to `actual` on the server (refund or extra charge).
    ///
    /// # Errors
    /// [`AcquireError::Backend`] when the server cannot be reached; the
    /// charge then stays as it was.
    pub async fn reconcile(&mut self, actual: Charge) -> Result<(), AcquireError> {
        let deltas: Vec<i128> = (0..self.limiter.inner.keys.len())
            .map(|i| i128::from(actual.get(i)) - i128::from(self.charged.get(i)))
            .collect();
        if deltas.iter().any(|&d| d != 0) {
            self.limiter.run("adjust", &deltas).await?;
            self.charged = actual;
        }
        Ok(())
    }
}
