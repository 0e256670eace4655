//! Embedders: the [`Embedder`] trait and the built-in local [`HashingEmbedder`].

use std::fmt;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::scope::fnv1a;

/// Turns texts into vectors, a batch at a time.
///
/// Implementations should return one vector per input, each of
/// [`dimensions`](Self::dimensions) floats. The semantic cache normalizes
/// them (cosine similarity), checks the count and dimensions, and falls back
/// to exact keys when embedding fails.
pub trait Embedder: fmt::Debug + Send + Sync + 'static {
    /// The length of every vector.
    fn dimensions(&self) -> usize;

    /// Embeds a batch of texts.
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, Error>>;
}

/// A local embedder with no model and no network: feature hashing of word
/// unigrams, word bigrams and character trigrams into a fixed number of
/// dimensions, L2-normalized.
///
/// **What it matches:** prompts that share most of their words and word
/// pieces — reordered words, small edits, typos, added or dropped filler
/// ("please", "can you"), inflections that share trigrams ("summarize" /
/// "summarise" / "summarizing").
/// **What it cannot match:** paraphrases with different words ("cheap" vs
/// "inexpensive", "capital of France" vs "where does the French government
/// sit"). It measures *lexical* overlap, not meaning; use a real embedding
/// model (e.g. [`OpenAiEmbedder`](super::OpenAiEmbedder) against any
/// `/v1/embeddings` server) for that, and a [`Verifier`](super::Verifier)
/// either way, since high lexical overlap can hide opposite meanings.
///
/// ```
/// # futures_util::FutureExt::now_or_never(async {
/// use foundation_cache::semantic::{Embedder, HashingEmbedder};
/// let e = HashingEmbedder::new(256);
/// let v = e.embed(&["What is the capital of France?".into(), "what's the capital of france".into()]).await.unwrap();
/// let cos: f32 = v[0].iter().zip(&v[1]).map(|(a, b)| a * b).sum();
/// assert!(cos > 0.8, "{cos}");
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dims: usize,
}

/// Words that carry little meaning get less weight.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "were", "be", "of", "to", "in", "on", "for", "and", "or",
    "me", "my", "i", "you", "your", "it", "its", "what", "whats", "please", "can", "could",
    "would", "tell", "give", "do", "does", "with", "about",
];

// === impl HashingEmbedder ===

impl HashingEmbedder {
    /// An embedder producing `dims`-dimensional vectors (at least 16).
    #[must_use]
    pub fn new(dims: usize) -> Self {
        Self { dims: dims.max(16) }
    }

    /// Embeds one text synchronously.
    #[must_use]
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dims];
        let norm: String = text
            .chars()
            .map(|c| {
                if c.is_alphanumeric() {
                    c.to_ascii_lowercase()
                } else if c == '\'' {
                    '\0'
                } else {
                    ' '
                }
            })
            .filter(|c| *c != '\0')
            .collect();
        let words: Vec<&str> = norm.split_whitespace().collect();
        let mut add = |feature: &[u8], salt: u8, w: f32| {
            let mut bytes = Vec::with_capacity(feature.len() + 1);
            bytes.push(salt);
            bytes.extend_from_slice(feature);
            let h = fnv1a(&bytes);
            let i = usize::try_from(h % self.dims as u64).unwrap_or(0);
            let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
            if let Some(x) = v.get_mut(i) {
                *x += sign * w;
            }
        };
        for (i, w) in words.iter().enumerate() {
            let weight = if STOPWORDS.contains(w) { 0.25 } else { 1.0 };
            add(w.as_bytes(), b'w', 2.0 * weight);
            if let Some(next) = words.get(i + 1) {
                add(format!("{w} {next}").as_bytes(), b'b', 0.5 * weight);
            }
            let padded: Vec<char> = format!(" {w} ").chars().collect();
            for tri in padded.windows(3) {
                let s: String = tri.iter().collect();
                add(s.as_bytes(), b'c', 0.5 * weight);
            }
        }
        normalize(&mut v);
        v
    }
}

impl Embedder for HashingEmbedder {
    fn dimensions(&self) -> usize {
        self.dims
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, Error>> {
        let out = texts.iter().map(|t| self.embed_one(t)).collect();
        async move { Ok(out) }.boxed()
    }
}

/// Scales `v` to unit length (leaves a zero vector alone).
pub(crate) fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        for x in v {
            *x /= n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn lexical_neighbours_are_close_and_strangers_far() {
        let e = HashingEmbedder::new(384);
        let q = e.embed_one("How do I reset my password?");
        let near = e.embed_one("how can I reset my password");
        let far = e.embed_one("Summarize the quarterly earnings report");
        assert!(cos(&q, &near) > 0.8, "{}", cos(&q, &near));
        assert!(cos(&q, &far) < 0.3, "{}", cos(&q, &far));
        assert!((cos(&q, &q) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn empty_text_is_a_zero_vector() {
        let e = HashingEmbedder::new(64);
        assert!(e.embed_one("   ").iter().all(|x| *x == 0.0));
    }
}
