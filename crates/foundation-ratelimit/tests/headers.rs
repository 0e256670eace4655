//! Header parsing against real captured header sets
//! (`tests/data/ratelimit-headers.json`, copied from the workspace's shared
//! samples), and feeding them back into a limiter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests and their helpers fail loudly"
)]

mod support;

use std::time::{Duration, SystemTime};

use foundation_ratelimit::headers::RateLimitInfo;
use foundation_ratelimit::{Charge, DimensionConfig, LimiterConfig};
use serde_json::Value;

fn sets() -> Vec<Value> {
    let text = include_str!("data/ratelimit-headers.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    doc["sets"].as_array().unwrap().clone()
}

fn parse(set: &Value) -> RateLimitInfo {
    let headers = set["headers"].as_object().unwrap();
    let pairs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    // A response time well after every sample, so no instant is read as future by accident.
    RateLimitInfo::parse(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SystemTime::UNIX_EPOCH,
    )
}

#[test]
fn every_set_parses_and_matches_expect() {
    let sets = sets();
    assert!(sets.len() >= 9, "expected the full sample file");
    let mut checked = 0;
    for set in &sets {
        let name = set["name"].as_str().unwrap();
        let info = parse(set);
        let expect = &set["expect"];
        if let Some(ms) = expect.get("retry_after_ms").and_then(Value::as_u64) {
            assert_eq!(info.retry_after, Some(Duration::from_millis(ms)), "{name}");
            checked += 1;
        }
        for dim in ["requests", "tokens", "input_tokens", "output_tokens"] {
            let Some(e) = expect.get(dim) else { continue };
            let got = info
                .dimension(dim)
                .unwrap_or_else(|| panic!("{name}: {dim} missing"));
            if let Some(limit) = e.get("limit").and_then(Value::as_u64) {
                assert_eq!(got.limit, Some(limit), "{name}: {dim}.limit");
            }
            if let Some(rem) = e.get("remaining").and_then(Value::as_u64) {
                assert_eq!(got.remaining, Some(rem), "{name}: {dim}.remaining");
            }
            if let Some(ms) = e.get("reset_ms").and_then(Value::as_u64) {
                assert_eq!(
                    got.reset_after(SystemTime::UNIX_EPOCH),
                    Some(Duration::from_millis(ms)),
                    "{name}: {dim}.reset"
                );
            }
            if let Some(at) = e.get("reset_at").and_then(Value::as_str) {
                let want = humantime::parse_rfc3339(at).unwrap();
                assert_eq!(
                    got.reset,
                    Some(foundation_ratelimit::headers::Reset::At(want)),
                    "{name}: {dim}.reset_at"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} expectations checked");
}

#[test]
fn sentinels_and_malformed_values_are_ignored() {
    let sets = sets();
    let azure = sets
        .iter()
        .find(|s| s["name"] == "azure-openai-responses-sentinels")
        .unwrap();
    let info = parse(azure);
    let tokens = info.dimension("tokens").unwrap();
    assert_eq!(
        (tokens.limit, tokens.remaining),
        (None, None),
        "-1 is unknown, not 0 or u64::MAX"
    );
    assert_eq!(
        tokens.reset_after(SystemTime::UNIX_EPOCH),
        Some(Duration::ZERO)
    );

    let malformed = sets.iter().find(|s| s["name"] == "malformed").unwrap();
    let info = parse(malformed);
    assert_eq!(info.retry_after, None);
    let req = info.dimension("requests").unwrap();
    assert_eq!(req.limit, None);
    assert_eq!(req.remaining, None);
    assert_eq!(
        req.reset_after(SystemTime::UNIX_EPOCH),
        Some(Duration::from_millis(3_723_500))
    );
    let tok = info.dimension("tokens");
    assert!(tok.is_none_or(|t| t.limit.is_none() && t.remaining.is_none() && t.reset.is_none()));
}

#[test]
fn feedback_never_lets_local_state_exceed_the_server() {
    let cfg = LimiterConfig::new()
        .with_dimension(DimensionConfig::per_minute("requests", 500))
        .with_dimension(DimensionConfig::per_minute("tokens", 30_000));
    let (limiter, clock) = support::manual(cfg);
    let openai_429 = sets()
        .into_iter()
        .find(|s| s["name"] == "openai-429")
        .unwrap();
    let info = parse(&openai_429);
    limiter.observe(&info);
    let snap = limiter.snapshot();
    assert_eq!(
        snap.dimensions[1].remaining, 0,
        "server says 0 tokens remain"
    );
    // retry-after 20s holds every dimension, even requests that had room.
    let err = limiter.check(Charge::from([1, 0])).unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(20)));
    clock.advance(Duration::from_secs(20));
    limiter.check(Charge::from([1, 0])).unwrap();
    // Feedback never adds capacity: a stale "plenty remaining" changes nothing.
    let before = limiter.snapshot();
    let stale = RateLimitInfo::parse(
        [("x-ratelimit-remaining-tokens", "30000")],
        SystemTime::now(),
    );
    limiter.observe(&stale);
    assert_eq!(limiter.snapshot(), before);
}

#[test]
fn anthropic_feedback_maps_input_and_output_tokens() {
    let cfg = LimiterConfig::new()
        .with_dimension(DimensionConfig::per_minute("requests", 50))
        .with_dimension(DimensionConfig::per_minute("input_tokens", 40_000))
        .with_dimension(DimensionConfig::per_minute("output_tokens", 8_000));
    let (limiter, _clock) = support::manual(cfg);
    let set = sets()
        .into_iter()
        .find(|s| s["name"] == "anthropic-429")
        .unwrap();
    limiter.observe(&parse(&set));
    let snap = limiter.snapshot();
    assert_eq!(
        snap.dimensions[1].remaining, 0,
        "retry-after 7s holds input tokens too"
    );
    limiter.observe(&RateLimitInfo::parse(
        [("anthropic-ratelimit-output-tokens-remaining", "100")],
        SystemTime::now(),
    ));
    assert!(limiter.snapshot().dimensions[2].remaining <= 100);
}
