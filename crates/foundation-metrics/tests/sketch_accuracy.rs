//! Quantile accuracy against exact sorted samples, merge = union, many
//! threads recording, and flat memory over 10M samples.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod support;

use std::sync::Arc;

use foundation_metrics::sketch::{AtomicSketch, Quantile, RELATIVE_ERROR, Sketch};
use proptest::prelude::*;
use support::{Rng, exact_quantile, sorted};

const QS: [f64; 6] = [0.5, 0.9, 0.95, 0.99, 0.999, 1.0];
/// The guarantee plus float slack for values sitting exactly on a bucket edge.
const TOL: f64 = RELATIVE_ERROR * (1.0 + 1e-9);

fn check(name: &str, samples: Vec<f64>) {
    let atomic = AtomicSketch::new();
    for v in &samples {
        atomic.record(*v);
    }
    let snap = atomic.snapshot();
    let exact = sorted(samples);
    assert_eq!(snap.count(), exact.len() as u64);
    for q in QS {
        let want = exact_quantile(&exact, q);
        for (how, got) in [
            (
                "atomic",
                atomic.quantile(Quantile::new(q).unwrap()).unwrap(),
            ),
            (
                "snapshot",
                snap.quantile(Quantile::new(q).unwrap()).unwrap(),
            ),
        ] {
            let err = if want == 0.0 {
                got.abs()
            } else {
                (got - want).abs() / want.abs()
            };
            assert!(
                err <= TOL,
                "{name} {how} p{q}: got {got}, exact {want}, error {err}"
            );
        }
    }
    assert_eq!(snap.min(), exact.first().copied());
    assert_eq!(snap.max(), exact.last().copied());
    let exact_sum: f64 = exact.iter().sum();
    assert!((snap.sum() - exact_sum).abs() <= 1e-6 * exact_sum.abs());
}

#[test]
fn uniform_is_within_one_percent() {
    let mut rng = Rng::new(1);
    check(
        "uniform",
        (0..200_000).map(|_| 0.001 + rng.unit() * 10.0).collect(),
    );
}

#[test]
fn lognormal_is_within_one_percent() {
    let mut rng = Rng::new(2);
    check(
        "lognormal",
        (0..200_000).map(|_| rng.lognormal(0.25, 1.2)).collect(),
    );
}

#[test]
fn llm_bimodal_is_within_one_percent() {
    let mut rng = Rng::new(3);
    let samples: Vec<f64> = (0..200_000).map(|_| rng.llm_latency()).collect();
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    let p99 = exact_quantile(&sorted(samples.clone()), 0.99);
    // The data is what the issue describes: mean ~800 ms, p99 ~7 s.
    assert!((0.7..0.9).contains(&mean), "mean {mean}");
    assert!((6.0..8.0).contains(&p99), "p99 {p99}");
    check("llm", samples);
}

#[test]
fn signed_and_zero_values_are_within_one_percent() {
    let mut rng = Rng::new(4);
    check(
        "signed",
        (0..50_000)
            .map(|i| {
                if i % 10 == 0 {
                    0.0
                } else {
                    rng.normal() * 100.0
                }
            })
            .filter(|v| *v == 0.0 || v.abs() > 1e-6)
            .collect(),
    );
}

#[test]
fn many_threads_lose_nothing() {
    let s = Arc::new(AtomicSketch::new());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut rng = Rng::new(100 + t);
                for _ in 0..100_000 {
                    s.record(rng.lognormal(0.5, 0.8));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.count(), 800_000);
    let snap = s.snapshot();
    assert_eq!(snap.count(), 800_000);
    // Same data recorded single-threaded gives the same sketch.
    let mut single = Sketch::new();
    for t in 0..8u64 {
        let mut rng = Rng::new(100 + t);
        for _ in 0..100_000 {
            single.record(rng.lognormal(0.5, 0.8));
        }
    }
    for q in QS {
        let q = Quantile::new(q).unwrap();
        assert_eq!(snap.quantile(q), single.quantile(q));
    }
    assert!((snap.sum() - single.sum()).abs() <= 1e-9 * single.sum());
}

#[test]
fn many_threads_with_buffered_recorders_lose_nothing() {
    let s = Arc::new(AtomicSketch::new());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut rng = Rng::new(200 + t);
                let mut r = s.recorder();
                for _ in 0..50_001 {
                    r.record(rng.lognormal(0.5, 0.8));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.count(), 8 * 50_001);
}

#[test]
fn memory_is_flat_over_ten_million_samples() {
    let s = AtomicSketch::new();
    let mut rng = Rng::new(5);
    for _ in 0..1_000_000 {
        s.record(rng.llm_latency());
    }
    let after_1m = s.allocated_bytes();
    for _ in 0..9_000_000 {
        s.record(rng.llm_latency());
    }
    assert_eq!(s.count(), 10_000_000);
    assert_eq!(s.allocated_bytes(), after_1m, "memory grew with samples");
    assert!(
        after_1m <= 8 * 1024,
        "a latency series should stay small: {after_1m} bytes"
    );
    assert!(AtomicSketch::max_allocated_bytes() <= 64 * 1024);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn merge_equals_sketch_of_union(
        a in proptest::collection::vec(-1e6f64..1e6, 0..400),
        b in proptest::collection::vec(1e-3f64..1e3, 0..400),
    ) {
        let mut merged = Sketch::from_samples(a.iter().copied());
        merged.merge(&Sketch::from_samples(b.iter().copied()));
        let union = Sketch::from_samples(a.iter().chain(b.iter()).copied());
        prop_assert_eq!(merged.count(), union.count());
        prop_assert_eq!(merged.min(), union.min());
        prop_assert_eq!(merged.max(), union.max());
        prop_assert!((merged.sum() - union.sum()).abs() <= 1e-6 * (1.0 + union.sum().abs()));
        let all = sorted(a.iter().chain(b.iter()).copied().collect());
        for q in [0.0, 0.25, 0.5, 0.9, 0.99, 1.0] {
            let q = Quantile::new(q).unwrap();
            prop_assert_eq!(merged.quantile(q), union.quantile(q));
            if let Some(got) = merged.quantile(q) {
                let want = exact_quantile(&all, q.get());
                if want.abs() > 1e-9 {
                    prop_assert!((got - want).abs() / want.abs() <= TOL, "q{} got {} want {}", q, got, want);
                }
            }
        }
    }

    #[test]
    fn json_round_trip_preserves_the_sketch(v in proptest::collection::vec(-1e9f64..1e9, 0..200)) {
        let s = Sketch::from_samples(v);
        let back = Sketch::from_json(&s.to_json().unwrap()).unwrap();
        prop_assert_eq!(back, s);
    }
}
