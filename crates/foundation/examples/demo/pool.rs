//! Elastic pools: the simulated provider's clients live in a `foundation-pool`
//! pool that scales with a burst, replaces broken clients in the background,
//! fails fast during an outage and recovers on its own.
//!
//! The scenario runs on a paused-clock tokio runtime of its own, so its 20
//! simulated seconds take a fraction of a second and the numbers are the same
//! on every run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use foundation::core::{Classify, ErrorKind};
use foundation::pool::deadpool_managed::{Metrics, RecycleError, RecycleResult};
use foundation::pool::{Decision, ElasticPool, Manager, RunError};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::report::Report;

/// The simulated provider: connections can be refused (outage) and existing
/// ones can be dropped by the server.
#[derive(Debug, Default)]
struct Provider {
    down: AtomicBool,
    /// Connections created before this generation are dead (server restart).
    generation: AtomicU64,
    /// Individually killed connections.
    killed: Mutex<Vec<u64>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Client {
    id: u64,
    generation: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("simulated provider: {0}")]
struct ProviderError(&'static str);

impl Classify for ProviderError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Transient
    }
}

impl Provider {
    fn alive(&self, c: &Client) -> bool {
        !self.down.load(Ordering::SeqCst)
            && c.generation == self.generation.load(Ordering::SeqCst)
            && !self.killed.lock().contains(&c.id)
    }
}

#[derive(Debug, Clone)]
struct ProviderManager(Arc<Provider>);

impl Manager for ProviderManager {
    type Type = Client;
    type Error = ProviderError;

    async fn create(&self) -> Result<Client, ProviderError> {
        tokio::time::sleep(Duration::from_millis(20)).await; // TLS handshake
        if self.0.down.load(Ordering::SeqCst) {
            return Err(ProviderError("connection refused"));
        }
        Ok(Client {
            id: self.0.next_id.fetch_add(1, Ordering::SeqCst),
            generation: self.0.generation.load(Ordering::SeqCst),
        })
    }

    async fn recycle(&self, c: &mut Client, _: &Metrics) -> RecycleResult<ProviderError> {
        tokio::time::sleep(Duration::from_millis(2)).await; // ping
        if self.0.alive(c) {
            Ok(())
        } else {
            Err(RecycleError::Backend(ProviderError("connection reset")))
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    ok: AtomicU64,
    failed_op: AtomicU64,
    overloaded: AtomicU64,
    unavailable: AtomicU64,
    timeout: AtomicU64,
}

#[derive(Debug)]
struct Row {
    at: Duration,
    phase: &'static str,
    capacity: usize,
    size: usize,
    in_use: usize,
    waiting: usize,
    health: String,
}

#[derive(Debug)]
struct Outcome {
    rows: Vec<Row>,
    ups: usize,
    downs: usize,
    peak: usize,
    check_failures: u64,
    created: u64,
    tally: Tally,
    final_health: String,
    final_capacity: usize,
}

/// Phases of the scenario: (start, name, concurrent workers).
const PHASES: [(u64, &str, usize); 5] = [
    (0, "steady", 3),
    (2_000, "burst", 40),
    (5_000, "quiet", 1),
    (12_000, "outage", 6),
    (15_000, "recovered", 3),
];
const END_MS: u64 = 20_000;

async fn scenario() -> Outcome {
    let provider = Arc::new(Provider::default());
    let pool = ElasticPool::builder(ProviderManager(Arc::clone(&provider)), 2, 32)
        .with_name("provider")
        .with(|c| {
            c.controller.tick = Duration::from_millis(100);
            c.controller.scale_up_cooldown = Duration::from_millis(200);
            c.controller.scale_down_cooldown = Duration::from_millis(500);
            c.controller.shrink_fraction = 0.25;
            c.health.check_interval = Duration::from_secs(1);
            c.health.idle_timeout = Some(Duration::from_secs(2));
            c.backoff.initial = Duration::from_millis(100);
            c.backoff.max = Duration::from_secs(1);
        })
        .build()
        .expect("valid pool config");
    pool.start().expect("inside a runtime");

    let t0 = Instant::now();
    let tally = Arc::new(Tally::default());
    let phase_of = |at: Duration| {
        let ms = u64::try_from(at.as_millis()).unwrap_or(u64::MAX);
        PHASES
            .iter()
            .rev()
            .find(|p| ms >= p.0)
            .copied()
            .unwrap_or(PHASES[0])
    };

    // Workers: worker i is active while the current phase wants more than i.
    let mut workers = Vec::new();
    for i in 0..40 {
        let pool = pool.clone();
        let tally = Arc::clone(&tally);
        let provider = Arc::clone(&provider);
        workers.push(tokio::spawn(async move {
            loop {
                let at = t0.elapsed();
                if at >= Duration::from_millis(END_MS) {
                    return;
                }
                if i >= phase_of(at).2 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let p = Arc::clone(&provider);
                let result = pool
                    .run(Duration::from_millis(500), async move |c: &mut Client| {
                        tokio::time::sleep(Duration::from_millis(80)).await; // the completion call
                        if p.alive(c) {
                            Ok(())
                        } else {
                            Err(ProviderError("stream reset"))
                        }
                    })
                    .await;
                let counter = match &result {
                    Ok(()) => &tally.ok,
                    Err(RunError::Operation(_)) => &tally.failed_op,
                    Err(e) => match e.kind() {
                        ErrorKind::Overloaded => &tally.overloaded,
                        ErrorKind::Unavailable => &tally.unavailable,
                        _ => &tally.timeout,
                    },
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if result.is_err() {
                    // A client backs off a little after a failure.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }

    // Script the incidents and sample the pool every 500ms.
    let mut rows = Vec::new();
    let mut peak = 0;
    let mut killed = false;
    let mut outage = false;
    let mut restored = false;
    while t0.elapsed() < Duration::from_millis(END_MS) {
        let at = t0.elapsed();
        if !killed && at >= Duration::from_millis(7_000) {
            // The server drops two idle connections.
            provider.killed.lock().extend([0, 1]);
            killed = true;
        }
        if !outage && at >= Duration::from_millis(12_000) {
            provider.down.store(true, Ordering::SeqCst);
            provider.generation.fetch_add(1, Ordering::SeqCst);
            outage = true;
        }
        if !restored && at >= Duration::from_millis(15_000) {
            provider.down.store(false, Ordering::SeqCst);
            restored = true;
        }
        let st = pool.status();
        peak = peak.max(st.capacity);
        rows.push(Row {
            at,
            phase: phase_of(at).1,
            capacity: st.capacity,
            size: st.size,
            in_use: st.in_use,
            waiting: st.waiting,
            health: st.health.to_string(),
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for w in workers {
        w.await.expect("worker");
    }
    let events = pool.scale_events();
    let st = pool.status();
    pool.shutdown();
    Outcome {
        rows,
        ups: events
            .iter()
            .filter(|e| matches!(e.decision, Decision::Grow { .. }))
            .count(),
        downs: events
            .iter()
            .filter(|e| matches!(e.decision, Decision::Shrink { .. }))
            .count(),
        peak,
        check_failures: st.check_failures_total,
        created: st.created_total,
        tally: Arc::try_unwrap(tally).expect("all workers joined"),
        final_health: st.health.to_string(),
        final_capacity: st.capacity,
    }
}

pub(crate) async fn run(report: &mut Report) {
    report.section("elastic pools (foundation-pool)");
    report.line("provider clients pooled (min 2, max 32): steady load, a burst of 40 workers,");
    report.line("a quiet period with two connections killed, a 3s outage, recovery");
    report.line("(20 simulated seconds on a paused clock)");
    let outcome = tokio::task::spawn_blocking(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(scenario())
    })
    .await
    .expect("pool scenario");

    report.line("");
    report.line(format!(
        "{:>6}  {:<9} {:>8} {:>5} {:>6} {:>7}  {}",
        "t", "phase", "capacity", "size", "in use", "waiting", "health"
    ));
    for r in outcome.rows.iter().step_by(2) {
        let bar = "#".repeat(r.size);
        report.line(format!(
            "{:>5.1}s  {:<9} {:>8} {:>5} {:>6} {:>7}  {:<11} {bar}",
            r.at.as_secs_f64(),
            r.phase,
            r.capacity,
            r.size,
            r.in_use,
            r.waiting,
            r.health
        ));
    }
    report.line("");
    let t = &outcome.tally;
    report.kv("peak capacity", outcome.peak);
    report.kv(
        "scale events (up / down)",
        format!("{} / {}", outcome.ups, outcome.downs),
    );
    report.kv("clients created", outcome.created);
    report.kv("replaced after failed health check", outcome.check_failures);
    report.kv("requests served", t.ok.load(Ordering::Relaxed));
    report.kv(
        "fast-fail unavailable / overloaded",
        format!(
            "{} / {}",
            t.unavailable.load(Ordering::Relaxed),
            t.overloaded.load(Ordering::Relaxed)
        ),
    );
    report.kv(
        "timed out (checkout or operation)",
        t.timeout.load(Ordering::Relaxed),
    );
    report.kv(
        "operation errors (dead connection)",
        t.failed_op.load(Ordering::Relaxed),
    );
    report.kv(
        "after recovery",
        format!(
            "{} at capacity {}, no restart",
            outcome.final_health, outcome.final_capacity
        ),
    );
}
