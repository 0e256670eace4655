//! A scriptable fake manager for fault-injection tests: fail creates, take the
//! backend down and up, slow or hanging creates and checks, broken objects.
#![allow(dead_code, unreachable_pub, reason = "each test binary uses a subset")]
#![allow(clippy::expect_used, reason = "test support fails loudly")]

#[cfg(feature = "postgres")]
pub mod pg_server;
#[cfg(feature = "postgres")]
pub mod proxy;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use foundation_pool::Manager;
use foundation_pool::deadpool_managed::{Metrics, RecycleError, RecycleResult};
use parking_lot::Mutex;

#[derive(Debug, Default)]
pub struct Script {
    /// `create` calls that reached the backend.
    pub create_calls: AtomicUsize,
    /// Objects created.
    pub created: AtomicUsize,
    /// Objects alive (created and not yet dropped).
    pub live: AtomicUsize,
    /// Health checks run.
    pub checks: AtomicUsize,
    /// While set, every create fails.
    pub down: AtomicBool,
    /// The next N creates fail.
    pub fail_next: AtomicUsize,
    /// While set, creates never finish.
    pub hang: AtomicBool,
    /// Ids whose check fails.
    pub broken: Mutex<HashSet<usize>>,
    /// Delay of each create.
    pub create_delay: Mutex<Duration>,
    /// Delay of each check.
    pub check_delay: Mutex<Duration>,
}

impl Script {
    pub fn break_all_live(&self, ids: impl IntoIterator<Item = usize>) {
        self.broken.lock().extend(ids);
    }
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
    pub fn create_calls(&self) -> usize {
        self.create_calls.load(Ordering::SeqCst)
    }
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Default)]
pub struct FakeManager {
    pub script: Arc<Script>,
}

#[derive(Debug)]
pub struct Conn {
    pub id: usize,
    script: Arc<Script>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.script.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("fake backend: {0}")]
pub struct FakeError(pub &'static str);

impl Manager for FakeManager {
    type Type = Conn;
    type Error = FakeError;

    async fn create(&self) -> Result<Conn, FakeError> {
        let s = &self.script;
        s.create_calls.fetch_add(1, Ordering::SeqCst);
        if s.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let delay = *s.create_delay.lock();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if s.down.load(Ordering::SeqCst) {
            return Err(FakeError("connection refused"));
        }
        if s.fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(FakeError("scripted failure"));
        }
        let id = s.created.fetch_add(1, Ordering::SeqCst);
        s.live.fetch_add(1, Ordering::SeqCst);
        Ok(Conn {
            id,
            script: Arc::clone(s),
        })
    }

    async fn recycle(&self, conn: &mut Conn, _: &Metrics) -> RecycleResult<FakeError> {
        let s = &self.script;
        s.checks.fetch_add(1, Ordering::SeqCst);
        let delay = *s.check_delay.lock();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if s.broken.lock().contains(&conn.id) || s.down.load(Ordering::SeqCst) {
            return Err(RecycleError::Backend(FakeError("broken connection")));
        }
        Ok(())
    }
}

/// Checks out `n` objects one after the other and holds them.
pub async fn hold_n<M>(
    pool: &foundation_pool::ElasticPool<M>,
    n: usize,
) -> Vec<foundation_pool::Pooled<M>>
where
    M: Manager,
    M::Error: std::fmt::Debug,
{
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(pool.get().await.expect("checkout"));
    }
    held
}

/// Lets background tasks run for `d` of paused time.
pub async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
}
