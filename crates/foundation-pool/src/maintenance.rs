//! The background tasks started by [`ElasticPool::start`](crate::ElasticPool::start):
//! the controller, the warmer and the health checker. Each holds only a weak
//! reference to the pool and ends when the pool is gone.

use std::sync::{Arc, Weak};
use std::time::Duration;

use deadpool::managed::Object;
use tokio::runtime::Handle;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::controller::{Controller, Decision, Sample};
use crate::manager::{Adapter, Manager};
use crate::pool::{NOW, PoolInner};
use crate::shared::{CloseReason, ControllerSnapshot, ScaleEvent};

/// Shortest sleep of a background loop (guards against busy loops).
const MIN_SLEEP: Duration = Duration::from_millis(1);

pub(crate) fn spawn<M>(
    handle: &Handle,
    weak: &Weak<PoolInner<M>>,
    inner: &Arc<PoolInner<M>>,
) -> Vec<JoinHandle<()>>
where
    M: Manager + 'static,
{
    // Start the controller where demand is now, at least at the floor.
    let cfg = inner.shared.config.load();
    let st = inner.pool.status();
    let demand = st.size.saturating_sub(st.available) + st.waiting;
    let initial = if cfg.controller.enabled {
        cfg.min_size.max(demand).clamp(1, cfg.max_size)
    } else {
        cfg.max_size
    };
    apply_capacity(inner, initial);
    let ctl = Controller::new(initial, Instant::now().into_std());
    vec![
        handle.spawn(controller_loop(weak.clone(), ctl)),
        handle.spawn(warm_loop(weak.clone())),
        handle.spawn(health_loop(weak.clone())),
    ]
}

fn apply_capacity<M: Manager>(inner: &PoolInner<M>, capacity: usize) {
    inner.pool.resize(capacity);
    inner
        .shared
        .capacity
        .store(capacity, std::sync::atomic::Ordering::Relaxed);
    inner.shared.metrics.capacity.set(capacity as f64);
}

async fn controller_loop<M: Manager>(weak: Weak<PoolInner<M>>, mut ctl: Controller) {
    let mut ticks = 0u64;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let shared = &inner.shared;
        let cfg = shared.config.load();
        let st = inner.pool.status();
        let in_use = st.size.saturating_sub(st.available);
        let m = &shared.metrics;
        m.size.set(st.size as f64);
        m.idle.set(st.available as f64);
        m.in_use.set(in_use as f64);
        m.waiting.set(st.waiting as f64);
        ticks += 1;
        let tokio_now = Instant::now();
        shared.tick_coarse(tokio_now, cfg.controller.tick * 2);
        let now = tokio_now.into_std();
        let decision = if cfg.controller.enabled {
            let sample = Sample {
                in_use,
                waiting: st.waiting,
                mean_wait: shared.take_mean_wait(),
            };
            ctl.observe(now, sample, &cfg.controller, cfg.min_size, cfg.max_size)
        } else {
            let from = st.max_size;
            ctl = Controller::new(cfg.max_size, now);
            if from == cfg.max_size {
                Decision::Hold
            } else {
                Decision::Clamp {
                    from,
                    to: cfg.max_size,
                }
            }
        };
        if let Some(to) = decision.new_capacity()
            && !inner.pool.is_closed()
        {
            apply_capacity(&inner, to);
            let inputs = ctl.smoothed();
            match decision {
                Decision::Grow { from, to, reason } => {
                    m.scale_up.increment(1);
                    tracing::info!(pool = %shared.name, from, to, reason = reason.as_str(), utilization = inputs.utilization, waiting = inputs.waiting, "pool scaled up");
                }
                Decision::Shrink { from, to, reason } => {
                    m.scale_down.increment(1);
                    tracing::info!(pool = %shared.name, from, to, reason = reason.as_str(), utilization = inputs.utilization, "pool scaled down");
                }
                _ => tracing::info!(pool = %shared.name, to, "pool capacity moved into new bounds"),
            }
            shared.push_event(ScaleEvent {
                at: now,
                decision,
                inputs,
            });
        }
        shared.snapshot.send_replace(ControllerSnapshot {
            capacity: ctl.capacity(),
            inputs: ctl.smoothed(),
            last: decision,
            ticks,
        });
        let tick = cfg.controller.tick;
        drop(inner);
        tokio::time::sleep(tick.max(MIN_SLEEP)).await;
    }
}

async fn warm_loop<M: Manager + 'static>(weak: Weak<PoolInner<M>>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let pause = warm_once(&inner).await;
        drop(inner);
        tokio::time::sleep(pause.max(MIN_SLEEP)).await;
    }
}

/// Brings the pool up to `min_size`; returns how long to wait before the next try.
pub(crate) async fn warm_once<M: Manager + 'static>(inner: &PoolInner<M>) -> Duration {
    let cfg = inner.shared.config.load();
    let tick = cfg.controller.tick;
    let mut held: Vec<Object<Adapter<M>>> = Vec::new();
    let mut pause = tick;
    loop {
        let st = inner.pool.status();
        if inner.pool.is_closed() || st.size >= cfg.min_size {
            break;
        }
        if let Some(wait) = inner.shared.gate.lock().retry_in(Instant::now().into_std()) {
            pause = wait;
            break;
        }
        let batch = (cfg.min_size - st.size).min(cfg.health.max_concurrent_checks);
        let mut set = JoinSet::new();
        for _ in 0..batch {
            let pool = inner.pool.clone();
            set.spawn(async move { pool.timeout_get(&NOW).await });
        }
        let mut failed = false;
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(obj)) => held.push(obj),
                _ => failed = true,
            }
        }
        if failed {
            // The gate knows the backoff; look again soon.
            pause = MIN_SLEEP;
            break;
        }
    }
    if !held.is_empty() {
        tracing::debug!(pool = %inner.shared.name, objects = held.len(), "warm-up round done");
    }
    drop(held);
    pause
}

async fn health_loop<M: Manager + 'static>(weak: Weak<PoolInner<M>>) {
    loop {
        let interval = match weak.upgrade() {
            Some(inner) => inner.shared.config.load().health.check_interval,
            None => return,
        };
        tokio::time::sleep(interval.max(MIN_SLEEP)).await;
        let Some(inner) = weak.upgrade() else { return };
        reap(&inner);
        check_idle(&inner).await;
    }
}

/// Closes idle objects past `max_lifetime`, and idle objects in excess of
/// `min_size` idle for longer than `idle_timeout` (bb8's reaper).
pub(crate) fn reap<M: Manager>(inner: &PoolInner<M>) {
    let cfg = inner.shared.config.load();
    let now = Instant::now();
    let mut size = inner.pool.status().size;
    let (mut lifetime, mut idle) = (0usize, 0usize);
    let removed = inner.pool.retain(|entry, _| {
        if entry.expired(now, cfg.health.max_lifetime) {
            lifetime += 1;
            size = size.saturating_sub(1);
            return false;
        }
        if let Some(limit) = cfg.health.idle_timeout
            && size > cfg.min_size
            && now.saturating_duration_since(entry.last_used()) >= limit
        {
            idle += 1;
            size = size.saturating_sub(1);
            return false;
        }
        true
    });
    for _ in 0..lifetime {
        inner.shared.closed(CloseReason::MaxLifetime);
    }
    for _ in 0..idle {
        inner.shared.closed(CloseReason::IdleTimeout);
    }
    if lifetime + idle > 0 {
        tracing::debug!(pool = %inner.shared.name, lifetime, idle, "reaped idle objects");
    }
    drop(removed);
}

/// Checks the idle objects that have not been checked for half an interval,
/// `max_concurrent_checks` at a time, closing those that fail. Checked
/// objects are held until the round ends so each is visited once; the round
/// yields as soon as a checkout has to wait.
pub(crate) async fn check_idle<M: Manager + 'static>(inner: &PoolInner<M>) {
    let cfg = inner.shared.config.load();
    let idle = inner.pool.status().available;
    let due_after = cfg.health.check_interval / 2;
    let mut held: Vec<Object<Adapter<M>>> = Vec::new();
    let (mut visited, mut failed) = (0usize, 0usize);
    while visited < idle {
        let st = inner.pool.status();
        if st.waiting > 0 || st.available == 0 || inner.pool.is_closed() {
            break;
        }
        let batch = (idle - visited)
            .min(cfg.health.max_concurrent_checks)
            .min(st.available);
        let mut set = JoinSet::new();
        for _ in 0..batch {
            let pool = inner.pool.clone();
            set.spawn(async move {
                let mut obj = pool.timeout_get(&NOW).await.ok()?;
                let now = Instant::now();
                if obj.expired(now, obj.shared.hot.max_lifetime()) {
                    obj.shared.closed(CloseReason::MaxLifetime);
                    drop(Object::take(obj));
                    return None;
                }
                if now.saturating_duration_since(obj.last_checked()) < due_after {
                    return Some((obj, true));
                }
                let metrics = *Object::metrics(&obj);
                let ok = pool.manager().check(&mut obj, &metrics).await;
                Some((obj, ok))
            });
        }
        while let Some(r) = set.join_next().await {
            visited += 1;
            match r {
                Ok(Some((obj, true))) => held.push(obj),
                Ok(Some((obj, false))) => {
                    failed += 1;
                    inner.shared.closed(CloseReason::CheckFailed);
                    drop(Object::take(obj));
                }
                _ => {}
            }
        }
    }
    if failed > 0 {
        tracing::warn!(pool = %inner.shared.name, failed, checked = visited, "background health check closed objects");
    }
    drop(held);
}
