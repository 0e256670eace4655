//! Against a real PostgreSQL server (started by `cargo xtask test`, address in
//! `FOUNDATION_POSTGRES_URL`): killed connections are replaced by background
//! health checks before users see errors, and the pool recovers from a server
//! outage without a restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod support;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use foundation_pool::postgres::PgManager;
use foundation_pool::{ElasticPool, Health};
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
    let pool = ElasticPool::builder(PgManager::new(config), 2, 6)
        .with_name("pg-restart")
        .with(|c| {
            c.health.check_interval = Duration::from_millis(200);
            c.create_timeout = Duration::from_secs(2);
            c.backoff.initial = Duration::from_millis(50);
            c.backoff.max = Duration::from_millis(400);
        })
        .build()
        .unwrap();
    pool.start().unwrap();
    until("warm-up", Duration::from_secs(10), || {
        pool.status().size >= 2
    })
    .await;
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
