//! Prometheus text exposition (format 0.0.4).
//!
//! Histograms are rendered as real Prometheus histograms by default, with
//! bucket counts derived from the sketch at render time (so bounds can be
//! changed at runtime without losing history; every sample on or below a
//! bound is counted under it, and a sample less than 2% above a bound may be
//! too), or as summaries when configured. Every family gets `# HELP` and `# TYPE`,
//! counters are suffixed `_total`, and metric/label names are sanitized, so
//! `promtool check metrics` accepts the output.
//!
//! Native histograms are not offered: Prometheus ingests them only through
//! the protobuf exposition (the 0.0.4 text format has no syntax for them).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::atomic::Ordering;

use metrics::Key;

use crate::config::Exposition;
use crate::recorder::{Inner, MetricKind, Series};

/// The `Content-Type` of the text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `name` with every character outside `[a-zA-Z0-9_:]` replaced by `_`, and a
/// leading `_` added if it starts with a digit (or is empty).
#[must_use]
pub fn sanitize_metric_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Like [`sanitize_metric_name`] without `:`; names starting with the
/// reserved `__` are prefixed with `exported`.
#[must_use]
pub fn sanitize_label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if out.starts_with("__") {
        out.insert_str(0, "exported");
    }
    out
}

fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float in exposition syntax (`+Inf`, `-Inf`, `NaN`, shortest decimal).
#[must_use]
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// The rendered `{a="1",b="2"` prefix (without the closing brace) of a key's
/// labels, with names sanitized, reserved names renamed, duplicates dropped.
fn label_prefix(key: &Key, reserved: &str) -> String {
    let mut out = String::new();
    let mut seen = BTreeSet::new();
    for l in key.labels() {
        let mut name = sanitize_label_name(l.key());
        if name == reserved {
            name.insert_str(0, "exported_");
        }
        if !seen.insert(name.clone()) {
            continue;
        }
        out.push(if out.is_empty() { '{' } else { ',' });
        out.push_str(&name);
        out.push_str("=\"");
        escape_label_value(l.value(), &mut out);
        out.push('"');
    }
    out
}

/// `prefix` + extra label + `}` (or nothing when there are no labels).
fn labels_with(prefix: &str, extra: Option<(&str, &str)>) -> String {
    let mut out = prefix.to_owned();
    if let Some((k, v)) = extra {
        out.push(if out.is_empty() { '{' } else { ',' });
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(v, &mut out);
        out.push('"');
    }
    if !out.is_empty() {
        out.push('}');
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub(crate) fn render(inner: &Inner) -> String {
    let config = inner.config.load();
    let all = inner.collect();
    let families: BTreeMap<String, (MetricKind, Option<String>, u64, u64)> = inner
        .families
        .lock()
        .iter()
        .map(|(k, f)| (k.clone(), (f.kind, f.help.clone(), f.folded, f.rejected)))
        .collect();
    let mut out = String::with_capacity(4096);
    let mut emitted: BTreeSet<String> = BTreeSet::new();
    let mut invalid: Vec<(String, u64)> = Vec::new();

    for (raw_name, series) in &all {
        let Some((_, first)) = series.first() else {
            continue;
        };
        let kind = match first {
            Series::Counter(_) => MetricKind::Counter,
            Series::Gauge(_) => MetricKind::Gauge,
            Series::Histogram(_) => MetricKind::Histogram,
        };
        let mut name = sanitize_metric_name(raw_name);
        if kind == MetricKind::Counter && !name.ends_with("_total") {
            name.push_str("_total");
        }
        // Two raw names may sanitize to one; the first (sorted) wins.
        let taken = match kind {
            MetricKind::Histogram => ["", "_bucket", "_sum", "_count"]
                .iter()
                .any(|s| emitted.contains(&format!("{name}{s}"))),
            _ => emitted.contains(&name),
        };
        if taken {
            tracing::warn!(metric = %raw_name, exposed = %name, "metric name collides with another after sanitizing; not exposed");
            continue;
        }
        emitted.insert(name.clone());
        let help = families
            .get(raw_name)
            .and_then(|f| f.1.clone())
            .unwrap_or_else(|| format!("{raw_name} (no description registered)"));
        match kind {
            MetricKind::Counter | MetricKind::Gauge => {
                let type_name = if kind == MetricKind::Counter {
                    "counter"
                } else {
                    "gauge"
                };
                header(&mut out, &name, type_name, &help);
                for (key, s) in series {
                    let value = match s {
                        Series::Counter(c) => c.value.load(Ordering::Relaxed).to_string(),
                        Series::Gauge(g) => {
                            format_value(f64::from_bits(g.bits.load(Ordering::Relaxed)))
                        }
                        Series::Histogram(_) => continue,
                    };
                    let _ = writeln!(
                        out,
                        "{name}{} {value}",
                        labels_with(&label_prefix(key, ""), None)
                    );
                }
            }
            MetricKind::Histogram => {
                for n in ["_bucket", "_sum", "_count"] {
                    emitted.insert(format!("{name}{n}"));
                }
                let rule = config.rule_for(raw_name);
                let mut bad = 0;
                match rule.exposition {
                    Exposition::Histogram => {
                        header(&mut out, &name, "histogram", &help);
                        let bounds: Vec<String> =
                            rule.buckets.iter().map(|b| format_value(*b)).collect();
                        for (key, s) in series {
                            let Series::Histogram(h) = s else { continue };
                            let snap = h.sketch_snapshot();
                            bad += snap.invalid();
                            let prefix = label_prefix(key, "le");
                            let counts = snap.cumulative_counts(&rule.buckets);
                            for (b, c) in bounds.iter().zip(&counts) {
                                let _ = writeln!(
                                    out,
                                    "{name}_bucket{} {c}",
                                    labels_with(&prefix, Some(("le", b)))
                                );
                            }
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {}",
                                labels_with(&prefix, Some(("le", "+Inf"))),
                                snap.count()
                            );
                            let l = labels_with(&prefix, None);
                            let _ = writeln!(out, "{name}_sum{l} {}", format_value(snap.sum()));
                            let _ = writeln!(out, "{name}_count{l} {}", snap.count());
                        }
                    }
                    Exposition::Summary => {
                        header(&mut out, &name, "summary", &help);
                        for (key, s) in series {
                            let Series::Histogram(h) = s else { continue };
                            let snap = h.sketch_snapshot();
                            bad += snap.invalid();
                            let window = h.window_snapshot(config.summary_window);
                            let prefix = label_prefix(key, "quantile");
                            for q in &config.summary_quantiles {
                                let v = window.sketch.quantile(*q).unwrap_or(f64::NAN);
                                let _ = writeln!(
                                    out,
                                    "{name}{} {}",
                                    labels_with(
                                        &prefix,
                                        Some(("quantile", &format_value(q.get())))
                                    ),
                                    format_value(v)
                                );
                            }
                            let l = labels_with(&prefix, None);
                            let _ = writeln!(out, "{name}_sum{l} {}", format_value(snap.sum()));
                            let _ = writeln!(out, "{name}_count{l} {}", snap.count());
                        }
                    }
                }
                if bad > 0 {
                    invalid.push((raw_name.clone(), bad));
                }
            }
        }
    }

    // The recorder's own health: nothing it refuses goes unreported.
    let mut own = |metric: &str, help: &str, rows: Vec<(String, u64)>| {
        if rows.is_empty() || emitted.contains(metric) {
            return;
        }
        header(&mut out, metric, "counter", help);
        for (m, v) in rows {
            let mut l = String::from("{metric=\"");
            escape_label_value(&m, &mut l);
            let _ = writeln!(out, "{metric}{l}\"}} {v}");
        }
    };
    own(
        "foundation_metrics_series_folded_total",
        "Registrations of new label sets folded into the overflow series by the cardinality limit.",
        families
            .iter()
            .filter(|(_, f)| f.2 > 0)
            .map(|(k, f)| (k.clone(), f.2))
            .collect(),
    );
    own(
        "foundation_metrics_series_rejected_total",
        "Registrations of new label sets rejected by the cardinality limit.",
        families
            .iter()
            .filter(|(_, f)| f.3 > 0)
            .map(|(k, f)| (k.clone(), f.3))
            .collect(),
    );
    own(
        "foundation_metrics_invalid_samples_total",
        "Non-finite histogram samples that were not recorded.",
        invalid,
    );
    let conflicts = inner.kind_conflicts.load(Ordering::Relaxed);
    if conflicts > 0 {
        header(
            &mut out,
            "foundation_metrics_kind_conflicts_total",
            "counter",
            "Registrations refused because the name is registered with another metric kind.",
        );
        let _ = writeln!(out, "foundation_metrics_kind_conflicts_total {conflicts}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(
            sanitize_metric_name("http.requests-total"),
            "http_requests_total"
        );
        assert_eq!(sanitize_metric_name("9lives"), "_9lives");
        assert_eq!(sanitize_label_name("__name__"), "exported__name__");
        assert_eq!(sanitize_label_name("a:b"), "a_b");
    }

    #[test]
    fn values_use_exposition_spelling() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(1e-7), "0.0000001");
    }

    #[test]
    fn label_values_are_escaped() {
        let key = Key::from_parts("m", vec![metrics::Label::new("le", "a\"b\\c\nd")]);
        assert_eq!(label_prefix(&key, "le"), "{exported_le=\"a\\\"b\\\\c\\nd\"");
    }
}
