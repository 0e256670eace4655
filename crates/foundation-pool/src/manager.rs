//! Managers: the user's [`Manager`] (deadpool's trait, so existing deadpool
//! managers work unchanged), a [`FnManager`] for any async factory, and the
//! internal adapter that adds lifetimes, checks and the creation gate.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use tokio::time::Instant;

use crate::backoff::Admit;
use crate::shared::Shared;

pub use deadpool::managed::Manager;

/// A pooled object with the bookkeeping the pool needs (on tokio's clock, so
/// lifetimes follow paused time in tests).
#[derive(Debug)]
pub(crate) struct Entry<T> {
    pub(crate) obj: T,
    /// Held per object rather than per checkout, so that checkouts and
    /// returns do not touch a shared reference count.
    pub(crate) shared: Arc<Shared>,
    // Instants are kept as nanoseconds after the pool's base instant (see
    // `Shared::instant_at`): half the size of an `Instant`, which matters
    // because deadpool moves the entry on every checkout and return, and
    // a return records `last_used` from the coarse clock without clock
    // arithmetic.
    created: u64,
    pub(crate) last_used: u64,
    last_checked: u64,
    /// How long the creation took in nanoseconds (the wait of the checkout
    /// that created it).
    create_took: u64,
    /// Cached [`attention_at`](Self::attention_at) of a recycled object, in
    /// nanoseconds after the base instant (`u64::MAX`: never), valid while
    /// `attention_epoch` equals the config epoch.
    attention: u64,
    /// Config epoch `attention` was computed under (`u64::MAX`: stale).
    attention_epoch: u64,
}

// === impl Entry ===

impl<T> Entry<T> {
    pub(crate) fn expired(&self, now: Instant, max_lifetime: Option<Duration>) -> bool {
        max_lifetime.is_some_and(|l| now.saturating_duration_since(self.created()) >= l)
    }

    /// When this object was created.
    pub(crate) fn created(&self) -> Instant {
        self.shared.instant_at(self.created)
    }

    /// When this object last passed its check (or was created).
    pub(crate) fn last_checked(&self) -> Instant {
        self.shared.instant_at(self.last_checked)
    }

    /// Records a passed check at `now`.
    pub(crate) fn checked_at(&mut self, now: Instant) {
        self.last_checked = self.shared.nanos_at(now);
        self.invalidate_attention();
    }

    /// How long the creation took.
    pub(crate) fn create_took(&self) -> Duration {
        Duration::from_nanos(self.create_took)
    }

    /// When this object was last returned.
    pub(crate) fn last_used(&self) -> Instant {
        self.shared.instant_at(self.last_used)
    }

    /// Forgets the cached attention instant (its inputs changed).
    pub(crate) fn invalidate_attention(&mut self) {
        self.attention_epoch = u64::MAX;
    }

    /// [`attention_at`](Self::attention_at) with the live config, in
    /// nanoseconds after the base instant (`u64::MAX`: never). For a
    /// recycled object (`fresh == false`) it includes the check due and is
    /// cached until the config or the object's last check changes, so the
    /// common checkout does no clock arithmetic; a fresh object needs no
    /// check, only its lifetime counts.
    #[inline]
    pub(crate) fn attention_nanos(&mut self, fresh: bool) -> u64 {
        if !fresh && self.attention_epoch == self.shared.hot.epoch() {
            return self.attention;
        }
        self.compute_attention(fresh)
    }

    #[inline(never)]
    fn compute_attention(&mut self, fresh: bool) -> u64 {
        let hot = &self.shared.hot;
        let epoch = hot.epoch();
        let at = self.attention_at(
            hot.max_lifetime(),
            (!fresh).then(|| hot.check_after()).flatten(),
        );
        let nanos = at.map_or(u64::MAX, |t| self.shared.nanos_at(t));
        if !fresh {
            self.attention = nanos;
            self.attention_epoch = epoch;
        }
        nanos
    }

    /// Whether the object is surely within its lifetime at `now` (nanoseconds
    /// after the base instant), judged from the cached attention instant
    /// (which is never later than the end of the lifetime); `false` means
    /// "look with the clock".
    #[inline]
    pub(crate) fn surely_alive_at(&self, now: u64) -> bool {
        self.attention_epoch == self.shared.hot.epoch() && now < self.attention
    }

    /// The first instant at which this object needs attention on checkout
    /// (lifetime reached, or check due); `None` if never.
    pub(crate) fn attention_at(
        &self,
        max_lifetime: Option<Duration>,
        check_after: Option<Duration>,
    ) -> Option<Instant> {
        let lifetime = max_lifetime.and_then(|l| self.created().checked_add(l));
        let check = check_after.and_then(|a| self.last_checked().checked_add(a));
        match (lifetime, check) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Internal error of the adapter, mapped to [`PoolError`](crate::PoolError).
#[derive(Debug)]
pub(crate) enum AdapterError<E> {
    Backend(E),
    CreateTimeout(Duration),
    BackingOff { failures: u32, retry_in: Duration },
}

/// Wraps the user's manager for deadpool.
pub(crate) struct Adapter<M> {
    pub(crate) inner: M,
    pub(crate) shared: Arc<Shared>,
}

impl<M: fmt::Debug> fmt::Debug for Adapter<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adapter")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Gives the gate's probe slot back if a create future is dropped midway.
struct ProbeGuard<'a> {
    shared: &'a Shared,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.gate.lock().abandon();
        }
    }
}

// === impl Adapter ===

impl<M: Manager> Adapter<M> {
    /// Runs the user's check (`Manager::recycle`) within `check_timeout`.
    pub(crate) async fn check(&self, entry: &mut Entry<M::Type>, metrics: &Metrics) -> bool {
        let timeout = self.shared.config.load().health.check_timeout;
        let ok = matches!(
            tokio::time::timeout(timeout, self.inner.recycle(&mut entry.obj, metrics)).await,
            Ok(Ok(()))
        );
        if ok {
            entry.checked_at(Instant::now());
        }
        ok
    }
}

impl<M: Manager> managed::Manager for Adapter<M> {
    type Type = Entry<M::Type>;
    type Error = AdapterError<M::Error>;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        let shared = &*self.shared;
        let admit = shared.gate.lock().admit(Instant::now().into_std());
        if let Admit::BackingOff(retry_in) = admit {
            let failures = shared.gate.lock().failures();
            return Err(AdapterError::BackingOff { failures, retry_in });
        }
        let mut probe = ProbeGuard {
            shared,
            armed: true,
        };
        let cfg = shared.config.load();
        let began = Instant::now();
        // Boxed: creation is rare, and deadpool embeds this future in every
        // checkout's future, which is moved on each checkout.
        let result = Box::pin(tokio::time::timeout(
            cfg.create_timeout,
            self.inner.create(),
        ))
        .await;
        probe.armed = false;
        let now = Instant::now();
        match result {
            Ok(Ok(obj)) => {
                shared.created(now);
                Ok(Entry {
                    obj,
                    shared: Arc::clone(&self.shared),
                    created: shared.nanos_at(now),
                    last_used: shared.nanos_at(now),
                    last_checked: shared.nanos_at(now),
                    create_took: u64::try_from(now.saturating_duration_since(began).as_nanos())
                        .unwrap_or(u64::MAX),
                    attention: u64::MAX,
                    attention_epoch: u64::MAX,
                })
            }
            Ok(Err(e)) => {
                shared.create_failed(now, &cfg, "error");
                Err(AdapterError::Backend(e))
            }
            Err(_) => {
                shared.create_failed(now, &cfg, "timeout");
                Err(AdapterError::CreateTimeout(cfg.create_timeout))
            }
        }
    }

    /// Lifetime and health are judged by the pool after deadpool hands an
    /// object over (see `ElasticPool::checkout`), with the clock reading the
    /// checkout already took; deadpool's own recycle step has nothing to do.
    async fn recycle(&self, _: &mut Self::Type, _: &Metrics) -> RecycleResult<Self::Error> {
        Ok(())
    }

    fn detach(&self, entry: &mut Self::Type) {
        self.inner.detach(&mut entry.obj);
    }
}

/// A [`Manager`] from two async closures: one that creates an object and one
/// that checks it (the pool calls the check before handing out an object that
/// has not been checked for a while, and in the background).
///
/// The check borrows the object for the duration of its future, so it returns
/// a boxed future ([`CheckFuture`]).
///
/// ```
/// use foundation_pool::FnManager;
///
/// let manager = FnManager::new(
///     || async { Ok::<_, std::io::Error>(String::from("client")) },
///     |client: &mut String| Box::pin(async move { !client.is_empty() }),
/// );
/// # let _ = manager;
/// ```
pub struct FnManager<C, K> {
    create: C,
    check: K,
}

impl<C, K> fmt::Debug for FnManager<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnManager").finish_non_exhaustive()
    }
}

// === impl FnManager ===

impl<C, K> FnManager<C, K> {
    /// A manager that creates with `create` and checks with `check` (which
    /// answers whether the object is still fit to use).
    ///
    /// The bound on `check` is stated here so that closures are inferred
    /// with the right higher-ranked signature.
    pub const fn new<T>(create: C, check: K) -> Self
    where
        K: for<'a> Fn(&'a mut T) -> CheckFuture<'a>,
    {
        Self { create, check }
    }
}

/// The future a [`FnManager`] check returns: borrows the object, answers
/// whether it is fit to use.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

impl<C, CF, T, E, K> Manager for FnManager<C, K>
where
    C: Fn() -> CF + Send + Sync,
    CF: Future<Output = Result<T, E>> + Send,
    K: for<'a> Fn(&'a mut T) -> CheckFuture<'a> + Send + Sync,
    T: Send,
    E: Send,
{
    type Type = T;
    type Error = E;

    async fn create(&self) -> Result<T, E> {
        (self.create)().await
    }

    async fn recycle(&self, obj: &mut T, _: &Metrics) -> RecycleResult<E> {
        if (self.check)(obj).await {
            Ok(())
        } else {
            Err(RecycleError::message("check failed"))
        }
    }
}
