//! Against real PostgreSQL: killed connections are replaced by background
//! health checks before users see errors (server started by `cargo xtask
//! test`, address in `FOUNDATION_POSTGRES_URL`); the pool recovers from a
//! real server restart without a restart of its own (a private server the
//! test stops and starts), and from an outage simulated by a proxy in front
//! of the shared server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod support;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use foundation_pool::postgres::PgManager;
use foundation_pool::{ElasticPool, Health, PoolError};
use support::pg_server::PgServer;
use support::proxy::Proxy;
use tokio::time::Instant;
use tokio_postgres::config::Host;

fn pg_url() -> String {
    std::env::var("FOUNDATION_POSTGRES_URL").expect(
        "FOUNDATION_POSTGRES_URL is not set: run `cargo xtask test`, or start PostgreSQL and \
         export FOUNDATION_POSTGRES_URL=postgres://USER@127.0.0.1:PORT/DB",
    )
}

fn upstream(config: &tokio_postgres::Config) -> SocketAddr {
    let host = match &config.get_hosts()[0] {
        Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns, reason = "unix sockets exist only on unix")]
        _ => panic!("FOUNDATION_POSTGRES_URL must name a TCP host"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    (host.as_str(), port)
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

async fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A started pool of 2..=8 tuned for outage tests (frequent checks, quick
/// backoff), once warm.
async fn started_outage_pool<M>(manager: M, name: &str) -> ElasticPool<M>
where
    M: foundation_pool::Manager + 'static,
{
    let pool = ElasticPool::builder(manager, 2, 8)
        .with_name(name)
        .with(|c| {
            c.health.check_interval = Duration::from_millis(100);
            c.create_timeout = Duration::from_secs(2);
            c.backoff.initial = Duration::from_millis(50);
            c.backoff.max = Duration::from_millis(400);
        })
        .build()
        .unwrap();
    pool.start().unwrap();
    until("warm-up", Duration::from_secs(10), || {
        pool.status().health == Health::Healthy
    })
    .await;
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: cargo xtask test"]
async fn health_checks_replace_terminated_connections_before_users_see_errors() {
    let url = pg_url();
    let pool = ElasticPool::builder(PgManager::from_url(&url).unwrap(), 3, 6)
        .with_name("pg-terminate")
        .with(|c| {
            c.health.check_interval = Duration::from_millis(200);
            // Only the background checker may find the dead connections.
            c.health.check_on_checkout_after = None;
        })
        .build()
        .unwrap();
    pool.start().unwrap();
    until("warm-up", Duration::from_secs(10), || {
        pool.status().size >= 3
    })
    .await;

    let mut old = Vec::new();
    {
        let held: Vec<_> = support::hold_n(&pool, 3).await;
        for c in &held {
            let pid: i32 = c
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0);
            old.push(pid);
        }
    }
    let admin = admin(&url).await;
    for pid in &old {
        let killed: bool = admin
            .query_one("SELECT pg_terminate_backend($1)", &[pid])
            .await
            .unwrap()
            .get(0);
        assert!(killed, "could not terminate backend {pid}");
    }
    until(
        "the checker to replace all three",
        Duration::from_secs(10),
        || {
            let st = pool.status();
            st.check_failures_total >= 3 && st.size >= 3
        },
    )
    .await;

    // Users see only working connections.
    let held: Vec<_> = support::hold_n(&pool, 3).await;
    for c in &held {
        let pid: i32 = c
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("user saw an error")
            .get(0);
        assert!(!old.contains(&pid), "terminated backend {pid} handed out");
    }
    drop(held);
    pool.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: cargo xtask test"]
async fn recovers_after_the_server_goes_away_and_comes_back() {
    let url = pg_url();
    let direct: tokio_postgres::Config = url.parse().unwrap();
    let proxy = Proxy::start(upstream(&direct)).await;
    // Same credentials, but through the proxy (`host`/`port` append, so
    // start from an empty config).
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(proxy.addr.port());
    if let Some(user) = direct.get_user() {
        config.user(user);
    }
    if let Some(db) = direct.get_dbname() {
        config.dbname(db);
    }
    if let Some(pw) = direct.get_password() {
        config.password(pw);
    }
    let pool = started_outage_pool(PgManager::new(config), "pg-restart").await;
    let c = pool.get().await.unwrap();
    c.simple_query("SELECT 1").await.unwrap();
    drop(c);

    // The server goes away: connections die, new ones are refused.
    proxy.set_down();
    until(
        "the pool to notice the outage",
        Duration::from_secs(10),
        || pool.status().health == Health::Unavailable,
    )
    .await;
    let t0 = Instant::now();
    let err = pool.get_timeout(Duration::from_secs(5)).await.unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "did not fail fast: {:?} ({err})",
        t0.elapsed()
    );

    // It comes back: the pool recovers on its own.
    proxy.set_up();
    until("recovery", Duration::from_secs(10), || {
        let st = pool.status();
        st.health == Health::Healthy && st.size >= 2
    })
    .await;
    let c = pool.get().await.unwrap();
    c.simple_query("SELECT 1")
        .await
        .expect("query after recovery");
    drop(c);
    pool.shutdown();
}

/// Counts connection attempts (`create` calls that reach the server).
#[derive(Debug)]
struct Counting {
    inner: PgManager,
    attempts: Arc<AtomicUsize>,
}

impl foundation_pool::Manager for Counting {
    type Type = <PgManager as foundation_pool::Manager>::Type;
    type Error = <PgManager as foundation_pool::Manager>::Error;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        self.inner.create().await
    }

    async fn recycle(
        &self,
        conn: &mut Self::Type,
        metrics: &foundation_pool::deadpool_managed::Metrics,
    ) -> foundation_pool::deadpool_managed::RecycleResult<Self::Error> {
        self.inner.recycle(conn, metrics).await
    }
}

/// The real thing: the test owns a PostgreSQL server, stops it with
/// `pg_ctl -m fast stop` and starts it again; the same pool (never
/// restarted) fails fast without a connection storm while the server is
/// down and recovers on its own once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: cargo xtask test"]
async fn recovers_after_a_real_server_restart() {
    let mut server = tokio::task::block_in_place(PgServer::start);
    let attempts = Arc::new(AtomicUsize::new(0));
    let manager = Counting {
        inner: PgManager::from_url(&server.url()).unwrap(),
        attempts: Arc::clone(&attempts),
    };
    let pool = started_outage_pool(manager, "pg-real-restart").await;
    let before: i32 = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    tokio::task::block_in_place(|| server.stop());
    until(
        "the pool to notice the outage",
        Duration::from_secs(10),
        || pool.status().health == Health::Unavailable,
    )
    .await;

    // A burst of checkouts against a dead server: every one fails fast, and
    // they do not turn into connection attempts (the creation gate lets at
    // most one probe through at a time, on the backoff schedule).
    let attempts_before = attempts.load(Ordering::SeqCst);
    let t0 = Instant::now();
    let burst: Vec<_> = (0..32)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get_timeout(Duration::from_secs(5)).await.map(drop) })
        })
        .collect();
    let mut unavailable = 0;
    for t in burst {
        match t.await.unwrap() {
            Err(PoolError::Unavailable { .. }) => unavailable += 1,
            // The one checkout that happened to be the gate's probe sees the
            // refused connection itself.
            Err(PoolError::Create(_)) => {}
            other => panic!("checkout against a stopped server: {other:?}"),
        }
    }
    let took = t0.elapsed();
    let burst_attempts = attempts.load(Ordering::SeqCst) - attempts_before;
    assert!(took < Duration::from_secs(1), "did not fail fast: {took:?}");
    assert!(
        unavailable >= 30,
        "only {unavailable} of 32 failed with Unavailable"
    );
    assert!(
        burst_attempts <= 2,
        "32 checkouts caused {burst_attempts} connection attempts"
    );

    // Down for a while: attempts follow the backoff (50 ms doubling to
    // 400 ms), not the demand.
    let outage_start = attempts.load(Ordering::SeqCst);
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_millis(1500) {
        let err = pool.get_timeout(Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(err, PoolError::Unavailable { .. } | PoolError::Create(_)),
            "{err:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let outage_attempts = attempts.load(Ordering::SeqCst) - outage_start;
    assert!(
        (1..=10).contains(&outage_attempts),
        "{outage_attempts} connection attempts in 1.5 s of outage (a probe per backoff expected)"
    );
    assert_eq!(pool.status().health, Health::Unavailable);

    // The server comes back; the pool, never restarted, recovers on its own.
    tokio::task::block_in_place(|| server.start_again());
    until("recovery", Duration::from_secs(10), || {
        let st = pool.status();
        st.health == Health::Healthy && st.size >= 2
    })
    .await;
    let after: i32 = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("query after recovery")
        .get(0);
    assert_ne!(
        before, after,
        "a connection from before the restart survived"
    );
    pool.shutdown();
    tokio::task::block_in_place(move || drop(server));
}
