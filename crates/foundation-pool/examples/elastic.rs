//! An elastic pool of simulated provider clients under a burst: watch it grow,
//! shrink back, and fail fast while the backend is down.
//!
//! `cargo run -p foundation-pool --example elastic` (about 3 seconds).
#![allow(clippy::print_stdout, reason = "an example prints what it shows")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an example fails loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use foundation_pool::{ElasticPool, FnManager};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let down = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU32::new(0));
    let manager = {
        let down = Arc::clone(&down);
        FnManager::new(
            move || {
                let down = down.load(Ordering::SeqCst);
                let id = next_id.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_millis(5)).await; // connect
                    if down {
                        Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
                    } else {
                        Ok(id)
                    }
                }
            },
            |_: &mut u32| Box::pin(async { true }),
        )
    };
    let pool = ElasticPool::builder(manager, 2, 24)
        .with_name("example")
        .with(|c| {
            c.controller.tick = Duration::from_millis(50);
            c.controller.smoothing = Duration::from_millis(200);
            c.controller.scale_up_cooldown = Duration::from_millis(100);
            c.controller.scale_down_cooldown = Duration::from_millis(300);
            c.controller.shrink_fraction = 0.3;
            c.backoff.initial = Duration::from_millis(50);
            c.backoff.max = Duration::from_millis(400);
        })
        .build()
        .unwrap();
    pool.start().unwrap();

    let report = {
        let pool = pool.clone();
        tokio::spawn(async move {
            loop {
                let st = pool.status();
                println!(
                    "capacity {:>2}  size {:>2}  in use {:>2}  waiting {:>2}  {}",
                    st.capacity, st.size, st.in_use, st.waiting, st.health
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_millis(100)).await; // warm-up to min
    println!("-- burst: 30 workers for 1s");
    let workers: Vec<_> = (0..30)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let end = tokio::time::Instant::now() + Duration::from_secs(1);
                while tokio::time::Instant::now() < end {
                    let _ = pool
                        .run(Duration::from_millis(500), async |_: &mut u32| {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok::<(), std::io::Error>(())
                        })
                        .await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    println!("-- quiet");
    tokio::time::sleep(Duration::from_millis(1200)).await;

    println!("-- backend down");
    down.store(true, Ordering::SeqCst);
    // Objects in the pool still work; drain them so new ones are needed.
    pool.set_bounds(0, 24).unwrap();
    let held: Vec<_> = futures(&pool, pool.status().idle).await;
    for h in held {
        h.discard();
    }
    match pool.get_timeout(Duration::from_secs(1)).await {
        Ok(_) => println!("unexpected: got an object"),
        Err(e) => println!(
            "checkout while down: {e} ({:?})",
            foundation_core::Classify::kind(&e)
        ),
    }
    println!("-- backend up");
    down.store(false, Ordering::SeqCst);
    pool.set_bounds(2, 24).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    report.abort();
    println!("final: {:?}", pool.status().health);
    pool.shutdown();
}

async fn futures<M: foundation_pool::Manager>(
    pool: &ElasticPool<M>,
    n: usize,
) -> Vec<foundation_pool::Pooled<M>>
where
    M::Error: std::fmt::Debug,
{
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(pool.get().await.unwrap());
    }
    v
}
