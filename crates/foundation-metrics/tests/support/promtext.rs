//! A strict parser for the Prometheus text exposition format (0.0.4), used to
//! check that what the exporter serves is valid: syntax, escaping, metadata
//! order, grouping, duplicate series, and histogram/summary structure
//! (cumulative buckets, `+Inf` equal to `_count`).
#![allow(
    clippy::collapsible_if,
    clippy::collapsible_match,
    clippy::unwrap_used,
    reason = "a test parser, written for clarity"
)]

use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels.len() == s.labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && !s.starts_with("__")
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => {
            if s.eq_ignore_ascii_case("inf") || s.eq_ignore_ascii_case("nan") || s.contains("inf") {
                return Err(format!("bad float spelling {s:?}"));
            }
            s.parse::<f64>()
                .map_err(|e| format!("bad value {s:?}: {e}"))
        }
    }
}

fn unescape(s: &str, allow_quote: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('"') if allow_quote => out.push('"'),
                other => return Err(format!("bad escape \\{other:?} in {s:?}")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// The family a sample name belongs to, given the declared types.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if let Some(kind) = types.get(base) {
                if kind == "histogram" || (kind == "summary" && suffix != "_bucket") {
                    return base;
                }
            }
        }
    }
    name
}

fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    // `s` starts right after '{'.
    let mut labels = BTreeMap::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = rest[..eq].trim();
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..].trim_start();
        let body = rest.strip_prefix('"').ok_or("label value must be quoted")?;
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(i);
                break;
            }
        }
        let end = end.ok_or("unterminated label value")?;
        let value = unescape(&body[..end], true)?;
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("duplicate label {name:?}"));
        }
        rest = body[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err(format!("expected ',' or '}}' at {rest:?}"));
        }
    }
}

/// Parses and validates a whole exposition.
pub fn parse(text: &str) -> Result<Vec<Family>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("exposition must end with a newline".into());
    }
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut families: Vec<Family> = Vec::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut seen_series: HashSet<(String, BTreeMap<String, String>)> = HashSet::new();

    for (lineno, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", lineno + 1);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start();
            let mut parts = comment.splitn(3, ' ');
            match parts.next() {
                Some("HELP") => {
                    let name = parts.next().ok_or_else(|| at("HELP without name".into()))?;
                    if !is_metric_name(name) {
                        return Err(at(format!("bad metric name {name:?}")));
                    }
                    let doc = unescape(parts.next().unwrap_or(""), false).map_err(at)?;
                    if helps.insert(name.to_owned(), doc).is_some() {
                        return Err(at(format!("second HELP for {name}")));
                    }
                }
                Some("TYPE") => {
                    let name = parts.next().ok_or_else(|| at("TYPE without name".into()))?;
                    let kind = parts
                        .next()
                        .ok_or_else(|| at("TYPE without type".into()))?
                        .trim();
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(at(format!("unknown type {kind:?}")));
                    }
                    if families.iter().any(|f| f.name == name) {
                        return Err(at(format!("TYPE for {name} after its samples")));
                    }
                    if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                        return Err(at(format!("second TYPE for {name}")));
                    }
                }
                _ => {}
            }
            continue;
        }
        let (name, rest) = match line.find(['{', ' ', '\t']) {
            Some(i) => (&line[..i], &line[i..]),
            None => return Err(at("sample without value".into())),
        };
        if !is_metric_name(name) {
            return Err(at(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if let Some(r) = rest.strip_prefix('{') {
            parse_labels(r).map_err(at)?
        } else {
            (BTreeMap::new(), rest)
        };
        let mut toks = rest.split_whitespace();
        let value =
            parse_value(toks.next().ok_or_else(|| at("missing value".into()))?).map_err(at)?;
        if let Some(ts) = toks.next() {
            ts.parse::<i64>()
                .map_err(|e| at(format!("bad timestamp: {e}")))?;
        }
        if toks.next().is_some() {
            return Err(at("trailing tokens".into()));
        }
        if !seen_series.insert((name.to_owned(), labels.clone())) {
            return Err(at(format!("duplicate series {name}{labels:?}")));
        }
        let fam = family_of(name, &types).to_owned();
        let kind = types.get(&fam).cloned().unwrap_or_else(|| "untyped".into());
        match kind.as_str() {
            "histogram" => {
                if name.ends_with("_bucket") && !labels.contains_key("le") {
                    return Err(at("histogram bucket without le".into()));
                }
                if name == fam {
                    return Err(at(
                        "histogram sample without _bucket/_sum/_count suffix".into()
                    ));
                }
            }
            "summary" => {
                if name == fam && !labels.contains_key("quantile") {
                    return Err(at("summary quantile sample without quantile label".into()));
                }
            }
            "counter" if value < 0.0 => return Err(at("negative counter".into())),
            _ => {}
        }
        match families.last_mut() {
            Some(f) if f.name == fam => f.samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            }),
            _ => {
                if closed.contains(&fam) {
                    return Err(at(format!("samples of {fam} are not grouped together")));
                }
                if let Some(prev) = families.last() {
                    closed.insert(prev.name.clone());
                }
                families.push(Family {
                    name: fam.clone(),
                    kind,
                    help: helps.get(&fam).cloned(),
                    samples: vec![Sample {
                        name: name.to_owned(),
                        labels,
                        value,
                    }],
                });
            }
        }
    }
    for f in &mut families {
        if f.help.is_none() {
            f.help = helps.get(&f.name).cloned();
        }
        if f.kind == "histogram" {
            check_histogram(f)?;
        }
        if f.kind == "summary" {
            check_summary(f)?;
        }
    }
    Ok(families)
}

fn without(labels: &BTreeMap<String, String>, key: &str) -> BTreeMap<String, String> {
    let mut l = labels.clone();
    l.remove(key);
    l
}

fn check_histogram(f: &Family) -> Result<(), String> {
    let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let mut sums = BTreeMap::new();
    for s in &f.samples {
        if s.name.ends_with("_bucket") {
            let le = parse_value(&s.labels["le"])?;
            series
                .entry(without(&s.labels, "le"))
                .or_default()
                .push((le, s.value));
        } else if s.name.ends_with("_count") {
            counts.insert(s.labels.clone(), s.value);
        } else if s.name.ends_with("_sum") {
            sums.insert(s.labels.clone(), s.value);
        }
    }
    for (labels, buckets) in &series {
        let mut prev = (f64::NEG_INFINITY, 0.0);
        for &(le, v) in buckets {
            if le <= prev.0 {
                return Err(format!(
                    "{}: buckets not in increasing le order for {labels:?}",
                    f.name
                ));
            }
            if v < prev.1 {
                return Err(format!(
                    "{}: bucket counts decrease at le={le} for {labels:?}",
                    f.name
                ));
            }
            prev = (le, v);
        }
        if prev.0 != f64::INFINITY {
            return Err(format!("{}: no le=\"+Inf\" bucket for {labels:?}", f.name));
        }
        match counts.get(labels) {
            Some(c) if *c == prev.1 => {}
            other => {
                return Err(format!(
                    "{}: _count {other:?} != +Inf bucket {} for {labels:?}",
                    f.name, prev.1
                ));
            }
        }
        if !sums.contains_key(labels) {
            return Err(format!("{}: no _sum for {labels:?}", f.name));
        }
    }
    if counts.len() != series.len() {
        return Err(format!("{}: _count without buckets", f.name));
    }
    Ok(())
}

fn check_summary(f: &Family) -> Result<(), String> {
    for s in &f.samples {
        if s.name == f.name {
            let q = parse_value(&s.labels["quantile"])?;
            if !(0.0..=1.0).contains(&q) {
                return Err(format!("{}: quantile {q} out of range", f.name));
            }
            let base = without(&s.labels, "quantile");
            let has_count = f
                .samples
                .iter()
                .any(|c| c.name.ends_with("_count") && c.labels == base);
            if !has_count {
                return Err(format!("{}: quantiles without _count for {base:?}", f.name));
            }
        }
    }
    Ok(())
}

/// The parser's own check: accepts a valid exposition, rejects broken ones.
pub fn self_check() {
    let ok = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
    assert!(parse(ok).is_ok(), "{:?}", parse(ok));
    for bad in [
        "a 1",              // no trailing newline
        "a{x=\"1} 1\n",     // unterminated
        "a{x=\"\\q\"} 1\n", // bad escape
        "a 1\nb 2\na 3\n",  // not grouped (a twice)
        "a 1\na 1\n",       // duplicate series
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        "a inf\n",
        "1a 1\n",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}
