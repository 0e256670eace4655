//! Replays seeded synthetic workloads against moka's TinyLFU alone and with
//! the adaptive policy at the same L1 capacity, then against the predictive
//! warmer, then a two-tier cache with and without adaptive tier placement,
//! and prints the comparison.
//!
//! `cargo run -p foundation-cache --release --example evaluate`
#![allow(clippy::print_stdout, reason = "example output")]

use foundation_cache::adaptive::eval::{self, Workload};
use foundation_cache::warm::eval as warm;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let requests = 200_000;
    let capacity = 2_000;
    let workloads: Vec<Workload> = vec![
        eval::zipf(1, requests, 50_000, 0.9),
        eval::zipf(2, requests, 50_000, 1.1),
        eval::drifting(3, requests, 50_000, 1.0, 40_000),
        eval::uniform(4, requests, 50_000),
    ];
    println!(
        "L1 capacity {capacity} entries, {requests} requests, 50k keys, classes {:?}",
        eval::CLASSES
    );
    println!("| workload | policy | hit ratio | cost saved |");
    println!("|---|---|---|---|");
    for w in &workloads {
        for adaptive in [false, true] {
            let r = eval::replay(w, capacity, adaptive).await;
            println!(
                "| {} | {} | {:.3} | {:.3} |",
                w.name,
                if adaptive { "adaptive" } else { "moka TinyLFU" },
                r.hit_ratio(),
                r.saved_ratio()
            );
        }
    }

    println!();
    println!(
        "Tier placement, L1 {capacity} entries over an unbounded write-through L2, {requests} requests:"
    );
    println!("| workload | policy | hit ratio | cost saved | L2 hits | L2 writes | L2 entries |");
    println!("|---|---|---|---|---|---|---|");
    for w in [
        eval::with_one_shots(7, requests, 50_000, 0.9, 0.3),
        eval::zipf(8, requests, 50_000, 0.9),
    ] {
        for adaptive in [false, true] {
            let r = eval::replay_tiers(&w, capacity, adaptive).await;
            println!(
                "| {} | {} | {:.3} | {:.3} | {} | {} | {} |",
                w.name,
                if adaptive {
                    "adaptive"
                } else {
                    "TinyLFU + write-all"
                },
                r.overall.hit_ratio(),
                r.overall.saved_ratio(),
                r.l2_hits,
                r.l2_writes,
                r.l2_entries
            );
        }
    }

    println!();
    println!("Predictive warming, L1 1000 entries, 50k requests over 2000 documents × 10 pages:");
    println!(
        "| workload | warming | hit ratio | demand loads | prefetches issued | precision | wasted |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, keys) in [
        (
            "sequential (5% noise)",
            warm::sequential(5, 50_000, 2_000, 0.05),
        ),
        ("random", warm::random(6, 50_000, 2_000)),
    ] {
        for on in [false, true] {
            let r = warm::replay(&keys, 1_000, on).await;
            println!(
                "| {name} | {} | {:.3} | {} | {} | {:.3} | {} |",
                if on { "on" } else { "off" },
                r.hit_ratio,
                r.demand_loads,
                r.prefetch.issued,
                r.prefetch.precision(),
                r.prefetch.wasted
            );
        }
    }
}
