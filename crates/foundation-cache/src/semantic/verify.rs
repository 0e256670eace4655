//! Verifiers: a second opinion before a semantic match is served.

use std::collections::BTreeMap;
use std::fmt;

/// The verdict on a candidate match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Serve the match.
    Accept,
    /// Do not serve it; the reason is logged and counted.
    Veto(String),
}

/// Checks a semantic match before it is served: `query` is the new prompt,
/// `candidate` the cached prompt it matched.
///
/// Embedding similarity cannot tell "turn on" from "turn off" (GPTCache
/// #694): a verifier can. Implement it with rules, a cross-encoder or an
/// LLM judge.
pub trait Verifier: fmt::Debug + Send + Sync + 'static {
    /// Decides whether `candidate`'s answer may answer `query`.
    fn verify(&self, query: &str, candidate: &str) -> Verdict;
}

/// Vetoes matches whose prompts differ in numbers, in negation, or in one
/// word of a known opposite pair (on/off, enable/disable, …).
///
/// Cheap and conservative: it catches the near-duplicates with opposite or
/// different meaning that embeddings score highest, and lets paraphrases
/// through unless they change one of those signals.
///
/// ```
/// use foundation_cache::semantic::{LexicalGuard, Verdict, Verifier};
/// let g = LexicalGuard::default();
/// assert_eq!(g.verify("how do I enable dark mode", "how do i enable dark mode?"), Verdict::Accept);
/// assert!(matches!(g.verify("how do I disable dark mode", "how do I enable dark mode"), Verdict::Veto(_)));
/// assert!(matches!(g.verify("is 17 prime", "is 19 prime"), Verdict::Veto(_)));
/// assert!(matches!(g.verify("should I take aspirin", "should I not take aspirin"), Verdict::Veto(_)));
/// ```
#[derive(Debug, Clone)]
pub struct LexicalGuard {
    opposites: BTreeMap<String, String>,
}

const NEGATIONS: &[&str] = &[
    "not", "no", "never", "without", "none", "nothing", "neither", "nor", "cannot", "dont",
    "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "wont", "shouldnt", "cant", "couldnt",
];

const OPPOSITES: &[(&str, &str)] = &[
    ("on", "off"),
    ("enable", "disable"),
    ("enabled", "disabled"),
    ("increase", "decrease"),
    ("add", "remove"),
    ("before", "after"),
    ("max", "min"),
    ("maximum", "minimum"),
    ("allow", "deny"),
    ("true", "false"),
    ("up", "down"),
    ("start", "stop"),
    ("open", "close"),
    ("buy", "sell"),
    ("import", "export"),
    ("encrypt", "decrypt"),
    ("install", "uninstall"),
    ("lock", "unlock"),
    ("higher", "lower"),
    ("more", "less"),
    ("best", "worst"),
    ("pros", "cons"),
    ("advantages", "disadvantages"),
    ("include", "exclude"),
    ("accept", "reject"),
    ("upload", "download"),
    ("inside", "outside"),
    ("first", "last"),
    ("largest", "smallest"),
    ("fastest", "slowest"),
];

impl Default for LexicalGuard {
    fn default() -> Self {
        let mut opposites = BTreeMap::new();
        for (a, b) in OPPOSITES {
            opposites.insert((*a).to_owned(), (*b).to_owned());
            opposites.insert((*b).to_owned(), (*a).to_owned());
        }
        Self { opposites }
    }
}

// === impl LexicalGuard ===

impl LexicalGuard {
    /// Adds an opposite pair.
    #[must_use]
    pub fn with_opposites(mut self, a: &str, b: &str) -> Self {
        self.opposites.insert(a.to_lowercase(), b.to_lowercase());
        self.opposites.insert(b.to_lowercase(), a.to_lowercase());
        self
    }
}

fn words(s: &str) -> Vec<String> {
    s.to_lowercase()
        .chars()
        .filter(|c| *c != '\'' && *c != '’')
        .map(|c| {
            if c.is_alphanumeric() || c == '.' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .map(|w| w.trim_matches('.').to_owned())
        .filter(|w| !w.is_empty())
        .collect()
}

fn numbers(ws: &[String]) -> Vec<&str> {
    let mut n: Vec<&str> = ws
        .iter()
        .filter(|w| w.chars().any(|c| c.is_ascii_digit()))
        .map(String::as_str)
        .collect();
    n.sort_unstable();
    n
}

fn negations(ws: &[String]) -> usize {
    ws.iter()
        .filter(|w| NEGATIONS.contains(&w.as_str()))
        .count()
}

impl Verifier for LexicalGuard {
    fn verify(&self, query: &str, candidate: &str) -> Verdict {
        let (q, c) = (words(query), words(candidate));
        if numbers(&q) != numbers(&c) {
            return Verdict::Veto(format!(
                "numbers differ: {:?} vs {:?}",
                numbers(&q),
                numbers(&c)
            ));
        }
        if negations(&q) % 2 != negations(&c) % 2 {
            return Verdict::Veto("negation differs".into());
        }
        for w in &q {
            if let Some(opp) = self.opposites.get(w)
                && c.contains(opp)
                && !c.contains(w)
            {
                return Verdict::Veto(format!("opposites: {w:?} vs {opp:?}"));
            }
        }
        Verdict::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vetoes_polarity_flips_and_number_changes() {
        let g = LexicalGuard::default();
        for (a, b) in [
            (
                "What are the pros of remote work?",
                "What are the cons of remote work?",
            ),
            ("Convert 10 USD to EUR", "Convert 100 USD to EUR"),
            (
                "Is it safe to drink tap water",
                "Isn't it safe to drink tap water",
            ),
            ("how to turn on bluetooth", "how to turn off bluetooth"),
        ] {
            assert!(matches!(g.verify(a, b), Verdict::Veto(_)), "{a} / {b}");
        }
        assert_eq!(g.verify("What is 2+2?", "what is 2 + 2"), Verdict::Accept);
        assert_eq!(
            g.verify(
                "Summarize this article please",
                "please summarize this article"
            ),
            Verdict::Accept
        );
        assert_eq!(
            g.with_opposites("cat", "dog")
                .verify("feed the cat", "feed the dog")
                .clone(),
            Verdict::Veto("opposites: \"cat\" vs \"dog\"".into())
        );
    }
}
