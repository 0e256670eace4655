//! Semantic caching: reuse an answer for a prompt that *means* the same,
//! within the same scope, when a verifier agrees.
//!
//! A [`SemanticCache`] sits on a [`TieredCache`] keyed by the exact prompt.
//! A lookup tries the exact key first; then embeds the prompt, searches the
//! vector index **of the prompt's scope only** (one partition per scope, so
//! tenants, models and answer-changing parameters never mix), takes the best
//! match, requires `similarity >= threshold`, asks the [`Verifier`] (default
//! [`LexicalGuard`]: numbers, negation, opposite words), and serves the
//! matched prompt's entry. When the embedder fails, it falls back to the
//! exact key alone.

mod batch;
mod embed;
pub mod index;
mod openai;
pub mod tune;
mod verify;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use foundation_core::{BoxError, Validate, Validator};
use metrics::{Counter, Histogram};
use parking_lot::{Mutex, RwLock};

pub use batch::BatchingEmbedder;
pub use embed::{Embedder, HashingEmbedder};
pub use index::{AnnConfig, ExactIndex, PartitionIndex, dot};
pub use openai::{OpenAiEmbedder, parse_response, request_body};
pub use tune::{LabelledQuery, Objective, ThresholdReport};
pub use verify::{LexicalGuard, Verdict, Verifier};

use crate::cache::{CacheValue, Loaded, TieredCache};
use crate::error::Error;
use crate::scope::{Key, Scope, ScopeId};

/// Semantic lookup settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SemanticConfig {
    /// Minimum cosine similarity for a semantic hit, in (0, 1]. Tune it per
    /// embedder: the reported similarity of hits and near misses
    /// (`foundation_cache_semantic_similarity`) is the data to tune on.
    pub threshold: f32,
    /// Most prompts indexed (oldest dropped first).
    pub max_vectors: usize,
    /// Vectors per scope above which (feature `ann`) an approximate HNSW
    /// index is built in the background; below it, and without the feature,
    /// search is exact.
    #[serde(default = "default_ann_threshold")]
    pub ann_threshold: usize,
    /// The approximate index's parameters (feature `ann`).
    #[serde(default)]
    pub ann: AnnConfig,
}

/// Where exact search stops being cheaper than HNSW, measured by the
/// `cache_semantic_crossover` benchmark on 384-d vectors: at 2,048 vectors
/// exact p50 69 µs vs HNSW 61 µs; at 1,024 exact wins (36 vs 44 µs).
fn default_ann_threshold() -> usize {
    2_048
}

impl SemanticConfig {
    /// `threshold` and `max_vectors`, default ANN threshold.
    #[must_use]
    pub fn new(threshold: f32, max_vectors: usize) -> Self {
        Self {
            threshold,
            max_vectors,
            ann_threshold: default_ann_threshold(),
            ann: AnnConfig::default(),
        }
    }
}

impl Validate for SemanticConfig {
    fn validate_into(&self, v: &mut Validator) {
        v.check(
            self.threshold > 0.0 && self.threshold <= 1.0,
            "threshold",
            "must be in (0, 1]",
        );
        v.check(self.max_vectors > 0, "max_vectors", "must be at least 1");
        v.check(
            self.ann_threshold > 0,
            "ann_threshold",
            "must be at least 1",
        );
        v.nested("ann", &self.ann);
    }
}

/// How a request was answered.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// The exact prompt was cached.
    Exact,
    /// A prompt with this similarity matched and was served.
    Semantic {
        /// Cosine similarity of the match.
        similarity: f32,
        /// The cached prompt that matched.
        matched: Arc<str>,
    },
    /// Served by joining the computation of a similar prompt that was
    /// missing at the same time (one model call for both).
    Coalesced {
        /// Cosine similarity to the prompt being computed.
        similarity: f32,
        /// The prompt whose computation was joined.
        matched: Arc<str>,
    },
    /// Computed: nothing matched.
    Miss {
        /// Similarity of the nearest prompt in the scope, if any (a near miss
        /// when just below the threshold).
        nearest: Option<f32>,
        /// Why the verifier refused the best match, if it did.
        vetoed: Option<String>,
    },
    /// Computed (or exactly hit) without semantic lookup: the embedder failed.
    EmbedFailed,
}

impl Outcome {
    /// Whether the answer came from the cache.
    #[must_use]
    pub fn is_hit(&self) -> bool {
        matches!(
            self,
            Self::Exact | Self::Semantic { .. } | Self::Coalesced { .. }
        )
    }
}

/// A value with how it was obtained.
#[derive(Debug, Clone)]
pub struct Answer<V> {
    /// The value.
    pub value: V,
    /// How it was obtained.
    pub outcome: Outcome,
}

/// Computations per scope that later paraphrases can join; more run
/// uncoalesced.
const MAX_PENDING_PER_SCOPE: usize = 256;

/// A prompt being computed, joinable by paraphrases.
#[derive(Debug)]
struct InFlight {
    id: u64,
    key: Key,
    prompt: Arc<str>,
    vector: Vec<f32>,
}

enum Pending {
    /// Join the computation of this key.
    Join {
        key: Key,
        prompt: Arc<str>,
        similarity: f32,
    },
    /// Registered: compute, then drop the guard.
    Registered(PendingGuard),
}

/// Prompts being computed, per scope.
type PendingMap = Arc<Mutex<HashMap<ScopeId, Vec<InFlight>>>>;

/// Removes a registered computation when it ends, however it ends.
struct PendingGuard {
    pending: PendingMap,
    scope: ScopeId,
    id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut pending = self.pending.lock();
        if let Some(list) = pending.get_mut(&self.scope) {
            list.retain(|p| p.id != self.id);
            if list.is_empty() {
                pending.remove(&self.scope);
            }
        }
    }
}

/// Format version of [`IndexSnapshot`].
const SNAPSHOT_VERSION: u8 = 1;

/// A portable copy of a [`SemanticCache`]'s index: scopes, prompts and
/// vectors (answers stay in the tiers). Serialize it with any serde format.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IndexSnapshot {
    version: u8,
    dimensions: usize,
    entries: Vec<SnapshotEntry>,
}

impl IndexSnapshot {
    /// The number of prompts in the snapshot.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the snapshot holds no prompt.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct SnapshotEntry {
    /// The scope's canonical text.
    scope: String,
    prompt: String,
    vector: Vec<f32>,
}

/// The nearest indexed prompt of a lookup.
#[derive(Debug)]
struct Candidate {
    similarity: f32,
    key: Key,
    prompt: Arc<str>,
    veto: Option<String>,
}

#[derive(Debug)]
struct Indexed {
    key: Key,
    prompt: Arc<str>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<u64, Indexed>,
    by_key: HashMap<Key, u64>,
    order: VecDeque<(ScopeId, u64)>,
}

struct SemMetrics {
    sim_hit: Histogram,
    sim_below: Histogram,
    sim_vetoed: Histogram,
    exact: Counter,
    hit: Counter,
    below: Counter,
    vetoed: Counter,
    embed_failed: Counter,
    coalesced: Counter,
}

impl SemMetrics {
    fn new(cache: &str) -> Self {
        let c = cache.to_owned();
        let h = |o: &'static str| metrics::histogram!("foundation_cache_semantic_similarity", "cache" => c.clone(), "outcome" => o);
        let n = |o: &'static str| metrics::counter!("foundation_cache_semantic_lookups_total", "cache" => c.clone(), "outcome" => o);
        Self {
            sim_hit: h("hit"),
            sim_below: h("below_threshold"),
            sim_vetoed: h("vetoed"),
            exact: n("exact"),
            hit: n("hit"),
            below: n("below_threshold"),
            vetoed: n("vetoed"),
            embed_failed: n("embed_failed"),
            coalesced: n("coalesced"),
        }
    }
}

struct SemInner<V> {
    exact: TieredCache<V>,
    embedder: Arc<dyn Embedder>,
    verifier: Option<Arc<dyn Verifier>>,
    config: SemanticConfig,
    /// The live threshold (`f32` bits): `config.threshold` until tuned.
    threshold: AtomicU32,
    partitions: RwLock<HashMap<ScopeId, Arc<RwLock<PartitionIndex>>>>,
    state: Mutex<State>,
    next_id: AtomicU64,
    rebuilding: Mutex<HashSet<ScopeId>>,
    /// Approximate index builds running.
    builds: tokio::sync::watch::Sender<usize>,
    /// Prompts being computed, per scope (paraphrases join them).
    pending: PendingMap,
    metrics: SemMetrics,
}

impl<V> SemInner<V> {
    #[cfg(feature = "ann")]
    fn build_ann(&self, part: &RwLock<PartitionIndex>, copy: &ExactIndex) {
        let started = std::time::Instant::now();
        let built = index::build_ann(copy, &self.config.ann)
            .and_then(|ann| part.write().install(ann, copy));
        match built {
            Ok(()) => {
                tracing::debug!(vectors = copy.len(), took = ?started.elapsed(), "approximate index built")
            }
            Err(e) => {
                part.write().build_failed();
                tracing::warn!(error = %e, vectors = copy.len(), "approximate index build failed; search stays exact until the partition doubles");
            }
        }
    }

    #[cfg(not(feature = "ann"))]
    fn build_ann(&self, _part: &RwLock<PartitionIndex>, _copy: &ExactIndex) {}
}

/// A semantic cache over a [`TieredCache`]. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), foundation_cache::Error> {
/// use std::sync::Arc;
/// use foundation_cache::{CacheConfig, Scope, TieredCache};
/// use foundation_cache::semantic::{HashingEmbedder, Outcome, SemanticCache, SemanticConfig};
///
/// let exact = TieredCache::<String>::builder(CacheConfig::new(16 << 20)).build()?;
/// let cache = SemanticCache::builder(exact, Arc::new(HashingEmbedder::new(384)), SemanticConfig::new(0.8, 10_000)).build()?;
/// let scope = Scope::new().with_tenant("acme").with_model("small");
///
/// let a = cache.get_or_compute(&scope, "How do I reset my password?", || async {
///     Ok::<_, std::io::Error>("Settings → Security → Reset".to_string())
/// }).await?;
/// assert!(matches!(a.outcome, Outcome::Miss { .. }));
///
/// let b = cache.get_or_compute(&scope, "how can i reset my password", || async {
///     Ok::<_, std::io::Error>("(recomputed)".to_string())
/// }).await?;
/// assert!(matches!(b.outcome, Outcome::Semantic { .. }));
/// assert_eq!(b.value, a.value);
///
/// // Another tenant never sees it.
/// let other = Scope::new().with_tenant("globex").with_model("small");
/// let c = cache.get_or_compute(&other, "How do I reset my password?", || async {
///     Ok::<_, std::io::Error>("globex's own answer".to_string())
/// }).await?;
/// assert_eq!(c.value, "globex's own answer");
/// # Ok(()) }
/// ```
pub struct SemanticCache<V> {
    inner: Arc<SemInner<V>>,
}

impl<V> Clone for SemanticCache<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<V> fmt::Debug for SemanticCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemanticCache")
            .field("embedder", &self.inner.embedder)
            .field("verifier", &self.inner.verifier)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SemanticCache`].
#[must_use]
pub struct SemanticCacheBuilder<V> {
    exact: TieredCache<V>,
    embedder: Arc<dyn Embedder>,
    verifier: Option<Arc<dyn Verifier>>,
    config: SemanticConfig,
}

impl<V> fmt::Debug for SemanticCacheBuilder<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemanticCacheBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

// === impl SemanticCacheBuilder ===

impl<V: CacheValue> SemanticCacheBuilder<V> {
    /// Replaces the verifier (default: [`LexicalGuard`]).
    pub fn with_verifier(mut self, verifier: Arc<dyn Verifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Serves every match above the threshold without a second opinion.
    pub fn without_verifier(mut self) -> Self {
        self.verifier = None;
        self
    }

    /// Builds the cache.
    ///
    /// # Errors
    /// [`Error::Config`] naming the invalid field.
    pub fn build(self) -> Result<SemanticCache<V>, Error> {
        self.config.validate()?;
        if self.embedder.dimensions() == 0 {
            return Err(foundation_core::ValidationErrors::single(
                "embedder",
                "reports zero dimensions",
            )
            .into());
        }
        let metrics = SemMetrics::new(self.exact.name());
        Ok(SemanticCache {
            inner: Arc::new(SemInner {
                exact: self.exact,
                embedder: self.embedder,
                verifier: self.verifier,
                threshold: AtomicU32::new(self.config.threshold.to_bits()),
                config: self.config,
                partitions: RwLock::default(),
                state: Mutex::default(),
                next_id: AtomicU64::new(1),
                rebuilding: Mutex::default(),
                builds: tokio::sync::watch::Sender::new(0),
                pending: PendingMap::default(),
                metrics,
            }),
        })
    }
}

// === impl SemanticCache ===

impl<V: CacheValue> SemanticCache<V> {
    /// A builder over `exact` (which stores the answers) with `embedder`.
    pub fn builder(
        exact: TieredCache<V>,
        embedder: Arc<dyn Embedder>,
        config: SemanticConfig,
    ) -> SemanticCacheBuilder<V> {
        SemanticCacheBuilder {
            exact,
            embedder,
            verifier: Some(Arc::new(LexicalGuard::default())),
            config,
        }
    }

    /// The exact-key cache underneath.
    #[must_use]
    pub fn exact(&self) -> &TieredCache<V> {
        &self.inner.exact
    }

    /// The number of indexed prompts.
    #[must_use]
    pub fn indexed(&self) -> usize {
        self.inner.state.lock().entries.len()
    }

    /// How many scope partitions search an approximate (HNSW) index.
    #[must_use]
    pub fn approximate_partitions(&self) -> usize {
        self.inner
            .partitions
            .read()
            .values()
            .filter(|p| p.read().is_approximate())
            .count()
    }

    fn key(scope: &Scope, prompt: &str) -> Key {
        Key::new(scope, prompt.trim())
    }

    async fn embed_one(&self, prompt: &str) -> Result<Vec<f32>, Error> {
        let mut v = self.embed_batch(&[prompt.to_owned()]).await?;
        v.pop()
            .ok_or_else(|| Error::Embed("embedder returned no vector".into()))
    }

    /// Embeds `texts` in one call, checking count, dimensions and finiteness,
    /// and normalizes the vectors.
    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, Error> {
        let dims = self.inner.embedder.dimensions();
        let mut vs = self.inner.embedder.embed(texts).await?;
        if vs.len() != texts.len() {
            return Err(Error::Embed(format!(
                "expected {} embeddings, got {}",
                texts.len(),
                vs.len()
            )));
        }
        for (i, v) in vs.iter_mut().enumerate() {
            if v.len() != dims {
                return Err(Error::Embed(format!(
                    "embedding {i} has {} dimensions, expected {dims}",
                    v.len()
                )));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::Embed(format!(
                    "embedding {i} contains NaN or infinity"
                )));
            }
            embed::normalize(v);
        }
        Ok(vs)
    }

    /// The similarity threshold in force.
    #[must_use]
    pub fn threshold(&self) -> f32 {
        f32::from_bits(self.inner.threshold.load(Ordering::Relaxed))
    }

    /// Changes the similarity threshold (e.g. to a
    /// [`ThresholdReport::threshold`]); lookups use it from now on.
    ///
    /// # Errors
    /// [`Error::Config`] unless `threshold` is in (0, 1].
    pub fn set_threshold(&self, threshold: f32) -> Result<(), Error> {
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(foundation_core::ValidationErrors::single(
                "threshold",
                format!("must be in (0, 1], got {threshold}"),
            )
            .into());
        }
        self.inner
            .threshold
            .store(threshold.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Measures `queries` against what is cached now (nothing is served,
    /// computed or indexed) and returns the threshold that maximises
    /// `objective`, with its precision, recall and the whole curve. Apply it
    /// with [`set_threshold`](Self::set_threshold).
    ///
    /// # Errors
    /// [`Error::Embed`] when the queries cannot be embedded;
    /// [`Error::Config`] when no query has a servable match (nothing to tune
    /// on) or no threshold reaches the objective.
    pub async fn optimize_threshold(
        &self,
        queries: &[LabelledQuery],
        objective: Objective,
    ) -> Result<ThresholdReport, Error> {
        let texts: Vec<String> = queries.iter().map(|q| q.prompt.clone()).collect();
        let vectors = self.embed_batch(&texts).await?;
        let samples: Vec<tune::Sample> = queries
            .iter()
            .zip(&vectors)
            .map(|(lq, v)| {
                let key = Self::key(&lq.scope, &lq.prompt);
                let servable = self
                    .candidate(&key, &lq.prompt, v)
                    .filter(|c| c.veto.is_none());
                tune::Sample {
                    similarity: servable.as_ref().map(|c| c.similarity),
                    correct: servable.is_some_and(|c| {
                        lq.expected.as_deref().map(str::trim) == Some(c.prompt.trim())
                    }),
                    answerable: lq.expected.is_some(),
                }
            })
            .collect();
        tune::optimize(&samples, objective).ok_or_else(|| {
            foundation_core::ValidationErrors::single(
                "queries",
                "no threshold serves any labelled query at the objective (no servable matches?)",
            )
            .into()
        })
    }

    /// The nearest indexed prompt in `key`'s scope, with the verifier's
    /// opinion of serving it for `prompt`.
    fn candidate(&self, key: &Key, prompt: &str, q: &[f32]) -> Option<Candidate> {
        let part = self.inner.partitions.read().get(key.scope()).cloned()?;
        let (id, similarity) = part.read().nearest(q)?;
        let (ckey, cprompt) = self
            .inner
            .state
            .lock()
            .entries
            .get(&id)
            .map(|e| (e.key.clone(), e.prompt.clone()))?;
        // Partitions are per scope, so this holds by construction; checked anyway.
        if ckey.scope() != key.scope() {
            return None;
        }
        let veto = match &self.inner.verifier {
            Some(v) => match v.verify(prompt, &cprompt) {
                Verdict::Veto(why) => Some(why),
                Verdict::Accept => None,
            },
            None => None,
        };
        Some(Candidate {
            similarity,
            key: ckey,
            prompt: cprompt,
            veto,
        })
    }

    /// Looks `prompt` up in `scope` without computing.
    ///
    /// # Errors
    /// [`Error::CachedFailure`] from the exact cache.
    pub async fn lookup(&self, scope: &Scope, prompt: &str) -> Result<(Option<V>, Outcome), Error> {
        let key = Self::key(scope, prompt);
        if let Some(v) = self.inner.exact.get(&key).await? {
            self.inner.metrics.exact.increment(1);
            return Ok((Some(v), Outcome::Exact));
        }
        match self.embed_one(prompt).await {
            Err(e) => {
                self.inner.metrics.embed_failed.increment(1);
                tracing::debug!(error = %e, "embedding failed; exact lookup only");
                Ok((None, Outcome::EmbedFailed))
            }
            Ok(q) => {
                let (v, outcome) = self.search(&key, prompt, &q).await?;
                Ok((v, outcome))
            }
        }
    }

    async fn search(
        &self,
        key: &Key,
        prompt: &str,
        q: &[f32],
    ) -> Result<(Option<V>, Outcome), Error> {
        let miss = |nearest, vetoed| Ok((None, Outcome::Miss { nearest, vetoed }));
        let Some(c) = self.candidate(key, prompt, q) else {
            return miss(None, None);
        };
        let m = &self.inner.metrics;
        let sim = c.similarity;
        if sim < self.threshold() {
            m.sim_below.record(f64::from(sim));
            m.below.increment(1);
            return miss(Some(sim), None);
        }
        if let Some(why) = c.veto {
            m.sim_vetoed.record(f64::from(sim));
            m.vetoed.increment(1);
            tracing::debug!(similarity = sim, reason = %why, "semantic match vetoed");
            return miss(Some(sim), Some(why));
        }
        match self.inner.exact.get(&c.key).await? {
            Some(v) => {
                m.sim_hit.record(f64::from(sim));
                m.hit.increment(1);
                Ok((
                    Some(v),
                    Outcome::Semantic {
                        similarity: sim,
                        matched: c.prompt,
                    },
                ))
            }
            None => {
                // The answer is gone (evicted, expired, invalidated): forget its vector.
                self.forget(&c.key);
                miss(Some(sim), None)
            }
        }
    }

    /// The answer for `prompt` in `scope`: exact hit, semantic hit, or
    /// computed by `f` and indexed (single-flight per exact prompt, and
    /// paraphrases missing at the same time share one computation).
    ///
    /// # Errors
    /// [`Error::Load`] when `f` fails (failures are never indexed).
    pub async fn get_or_compute<F, Fut, E>(
        &self,
        scope: &Scope,
        prompt: &str,
        f: F,
    ) -> Result<Answer<V>, Error>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.get_or_load(scope, prompt, move || {
            futures_util::FutureExt::map(f(), |r| r.map(Loaded::new))
        })
        .await
    }

    /// As [`get_or_compute`](Self::get_or_compute), with a loader that
    /// reports tags, TTL and cost.
    ///
    /// # Errors
    /// As [`get_or_compute`](Self::get_or_compute).
    pub async fn get_or_load<F, Fut, E>(
        &self,
        scope: &Scope,
        prompt: &str,
        f: F,
    ) -> Result<Answer<V>, Error>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded<V>, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let key = Self::key(scope, prompt);
        if let Some(v) = self.inner.exact.get(&key).await? {
            self.inner.metrics.exact.increment(1);
            return Ok(Answer {
                value: v,
                outcome: Outcome::Exact,
            });
        }
        let q = match self.embed_one(prompt).await {
            Ok(q) => q,
            Err(e) => {
                self.inner.metrics.embed_failed.increment(1);
                tracing::debug!(error = %e, "embedding failed; falling back to the exact key");
                let value = self.inner.exact.get_or_load(&key, f).await?;
                return Ok(Answer {
                    value,
                    outcome: Outcome::EmbedFailed,
                });
            }
        };
        let (found, outcome) = self.search(&key, prompt, &q).await?;
        if let Some(value) = found {
            return Ok(Answer { value, outcome });
        }
        // A paraphrase being computed right now answers this one too.
        let own = match self.join_or_register(&key, prompt, &q) {
            Pending::Join {
                key: other,
                prompt: matched,
                similarity,
            } => {
                let value = self.inner.exact.get_or_load(&other, f).await?;
                self.inner.metrics.coalesced.increment(1);
                return Ok(Answer {
                    value,
                    outcome: Outcome::Coalesced {
                        similarity,
                        matched,
                    },
                });
            }
            Pending::Registered(guard) => guard,
        };
        let value = self.inner.exact.get_or_load(&key, f).await;
        drop(own);
        let value = value?;
        self.index(key, prompt, &q);
        Ok(Answer { value, outcome })
    }

    /// Finds a computation in `key`'s scope of a prompt similar enough to
    /// `prompt` (threshold and verifier) to join, or registers this one.
    ///
    /// Joining means loading the other prompt's exact key: the exact cache's
    /// single-flight then runs one loader for both (whichever of the two
    /// reaches it first), and a finished computation answers from the cache.
    fn join_or_register(&self, key: &Key, prompt: &str, q: &[f32]) -> Pending {
        let threshold = self.threshold();
        let mut pending = self.inner.pending.lock();
        let list = pending.entry(key.scope().clone()).or_default();
        let best = list
            .iter()
            .map(|p| (dot(q, &p.vector), p))
            .filter(|(sim, _)| *sim >= threshold)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((similarity, p)) = best {
            let accepted = match &self.inner.verifier {
                Some(v) => matches!(v.verify(prompt, &p.prompt), Verdict::Accept),
                None => true,
            };
            if accepted {
                return Pending::Join {
                    key: p.key.clone(),
                    prompt: p.prompt.clone(),
                    similarity,
                };
            }
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        if list.len() < MAX_PENDING_PER_SCOPE {
            list.push(InFlight {
                id,
                key: key.clone(),
                prompt: Arc::from(prompt),
                vector: q.to_vec(),
            });
        }
        Pending::Registered(PendingGuard {
            pending: self.inner.pending.clone(),
            scope: key.scope().clone(),
            id,
        })
    }

    /// Stores answers for many prompts of one scope, embedding them in one batch.
    ///
    /// # Errors
    /// [`Error::Embed`] when the batch cannot be embedded (nothing is indexed;
    /// the answers are still stored under their exact prompts).
    pub async fn insert_many(&self, scope: &Scope, items: Vec<(String, V)>) -> Result<(), Error> {
        let prompts: Vec<String> = items.iter().map(|(p, _)| p.clone()).collect();
        for (p, v) in items {
            self.inner.exact.insert(&Self::key(scope, &p), v).await;
        }
        let vs = self.embed_batch(&prompts).await?;
        for (p, v) in prompts.iter().zip(vs) {
            self.index(Self::key(scope, p), p, &v);
        }
        Ok(())
    }

    fn index(&self, key: Key, prompt: &str, q: &[f32]) {
        let scope = key.scope().clone();
        let mut st = self.inner.state.lock();
        if st.by_key.contains_key(&key) {
            return;
        }
        while st.entries.len() >= self.inner.config.max_vectors {
            let Some((s, old)) = st.order.pop_front() else {
                break;
            };
            if let Some(e) = st.entries.remove(&old) {
                st.by_key.remove(&e.key);
                if let Some(p) = self.inner.partitions.read().get(&s) {
                    p.write().remove(old);
                }
            }
        }
        // Forgotten prompts leave their ids in `order`; drop them once they
        // outnumber the live ones, so the queue stays bounded.
        if st.order.len() > 2 * st.entries.len() + 64 {
            let State { order, entries, .. } = &mut *st;
            order.retain(|(_, id)| entries.contains_key(id));
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        st.by_key.insert(key.clone(), id);
        st.entries.insert(
            id,
            Indexed {
                key: key.clone(),
                prompt: Arc::from(prompt),
            },
        );
        st.order.push_back((scope.clone(), id));
        let part = self
            .inner
            .partitions
            .write()
            .entry(scope.clone())
            .or_insert_with(|| Arc::new(RwLock::new(PartitionIndex::new(q.len()))))
            .clone();
        // The vector goes in without the state lock (an HNSW insert takes
        // ~1.4 ms at 100k vectors here, and every lookup needs that lock), and
        // into an HNSW partition with room under its read lock, so searches
        // of the partition run meanwhile; then the entry is checked again, in
        // case it was evicted or forgotten meanwhile.
        drop(st);
        let shared = part.read().try_insert_shared(id, q);
        let inserted = match shared {
            Some(ok) => ok,
            None => part.write().insert(id, q),
        };
        let mut st = self.inner.state.lock();
        if !inserted || !st.entries.contains_key(&id) {
            if st.entries.remove(&id).is_some() {
                st.by_key.remove(&key);
            }
            drop(st);
            part.write().remove(id);
            return;
        }
        drop(st);
        self.start_build(scope, &part);
    }

    /// Builds every approximate index that is due now and waits for it
    /// (normally builds run in the background after inserts); for bulk loads
    /// with [`insert_many`](Self::insert_many) and for tests. Without the
    /// `ann` feature there is nothing to build.
    pub async fn compact(&self) {
        let parts: Vec<(ScopeId, Arc<RwLock<PartitionIndex>>)> = self
            .inner
            .partitions
            .read()
            .iter()
            .map(|(s, p)| (s.clone(), p.clone()))
            .collect();
        for (scope, part) in parts {
            self.start_build(scope, &part);
        }
        // Wait for these and for builds already running.
        let mut running = self.inner.builds.subscribe();
        let _ = running.wait_for(|n| *n == 0).await;
    }

    /// Starts building `part`'s approximate index on a blocking thread, if
    /// one is due and none is being built.
    fn start_build(&self, scope: ScopeId, part: &Arc<RwLock<PartitionIndex>>) {
        let Some(copy) = part.read().build_due(self.inner.config.ann_threshold) else {
            return;
        };
        if !self.inner.rebuilding.lock().insert(scope.clone()) {
            return;
        }
        self.inner.builds.send_modify(|n| *n += 1);
        let (part, inner) = (part.clone(), self.inner.clone());
        tokio::task::spawn_blocking(move || {
            inner.build_ann(&part, &copy);
            inner.rebuilding.lock().remove(&scope);
            inner.builds.send_modify(|n| *n -= 1);
        });
    }
    fn forget(&self, key: &Key) {
        let mut st = self.inner.state.lock();
        if let Some(id) = st.by_key.remove(key) {
            st.entries.remove(&id);
            if let Some(p) = self.inner.partitions.read().get(key.scope()) {
                p.write().remove(id);
            }
        }
    }

    /// A copy of the semantic index — every indexed prompt with its scope and
    /// vector, oldest first — to persist (it is serde-serializable) and
    /// [`import_index`](Self::import_index) into a new process, whose
    /// answers come back from a durable or shared tier.
    #[must_use]
    pub fn export_index(&self) -> IndexSnapshot {
        let st = self.inner.state.lock();
        let parts = self.inner.partitions.read();
        let entries = st
            .order
            .iter()
            .filter_map(|(scope, id)| {
                let e = st.entries.get(id)?;
                let vector = parts.get(scope)?.read().vector(*id)?;
                Some(SnapshotEntry {
                    scope: scope.canonical().to_owned(),
                    prompt: e.prompt.to_string(),
                    vector,
                })
            })
            .collect();
        IndexSnapshot {
            version: SNAPSHOT_VERSION,
            dimensions: self.inner.embedder.dimensions(),
            entries,
        }
    }

    /// Indexes the prompts of `snapshot` (taken with
    /// [`export_index`](Self::export_index)) without embedding them again;
    /// returns how many were added (prompts already indexed are skipped).
    /// Approximate indexes due are built in the background
    /// ([`compact`](Self::compact) waits for them). A prompt whose answer
    /// is no longer in any tier is dropped at its first match.
    ///
    /// # Errors
    /// [`Error::Config`] when the snapshot has another format version or
    /// dimension count, or a vector is malformed (nothing is imported then).
    pub fn import_index(&self, snapshot: IndexSnapshot) -> Result<usize, Error> {
        let dims = self.inner.embedder.dimensions();
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(foundation_core::ValidationErrors::single(
                "snapshot.version",
                format!(
                    "unsupported version {} (expected {SNAPSHOT_VERSION})",
                    snapshot.version
                ),
            )
            .into());
        }
        if snapshot.dimensions != dims {
            return Err(foundation_core::ValidationErrors::single(
                "snapshot.dimensions",
                format!(
                    "{} dimensions, the embedder has {dims}",
                    snapshot.dimensions
                ),
            )
            .into());
        }
        if let Some(i) = snapshot
            .entries
            .iter()
            .position(|e| e.vector.len() != dims || e.vector.iter().any(|x| !x.is_finite()))
        {
            return Err(foundation_core::ValidationErrors::single(
                foundation_core::FieldPath::from("snapshot.entries")
                    .index(i)
                    .field("vector"),
                format!("must be {dims} finite numbers"),
            )
            .into());
        }
        let before = self.indexed();
        for e in snapshot.entries {
            let scope = ScopeId::from_canonical(e.scope);
            let mut v = e.vector;
            embed::normalize(&mut v);
            self.index(Key::new(scope, e.prompt.trim()), &e.prompt, &v);
        }
        Ok(self.indexed().saturating_sub(before))
    }

    /// Removes one prompt's answer and vector.
    ///
    /// # Errors
    /// As [`TieredCache::invalidate`].
    pub async fn invalidate(&self, scope: &Scope, prompt: &str) -> Result<(), Error> {
        let key = Self::key(scope, prompt);
        self.forget(&key);
        self.inner.exact.invalidate(&key).await
    }

    /// Removes every answer and vector of `scope`.
    ///
    /// # Errors
    /// As [`TieredCache::invalidate_scope`].
    pub async fn invalidate_scope(&self, scope: &Scope) -> Result<(), Error> {
        let id = scope.id();
        self.inner.partitions.write().remove(&id);
        {
            let mut st = self.inner.state.lock();
            let gone: Vec<u64> = st
                .entries
                .iter()
                .filter(|(_, e)| e.key.scope() == &id)
                .map(|(i, _)| *i)
                .collect();
            for i in gone {
                if let Some(e) = st.entries.remove(&i) {
                    st.by_key.remove(&e.key);
                }
            }
        }
        self.inner.exact.invalidate_scope(&id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CacheConfig;

    #[tokio::test]
    async fn forgotten_prompts_do_not_grow_the_eviction_queue() {
        let exact = TieredCache::<String>::builder(CacheConfig::new(1 << 20))
            .build()
            .unwrap();
        let c = SemanticCache::builder(
            exact,
            Arc::new(HashingEmbedder::new(32)),
            SemanticConfig::new(0.9, 100),
        )
        .build()
        .unwrap();
        let scope = Scope::new().with_tenant("t");
        for i in 0..2_000 {
            let prompt = format!("question number {i}");
            c.insert_many(&scope, vec![(prompt.clone(), "a".to_owned())])
                .await
                .unwrap();
            c.invalidate(&scope, &prompt).await.unwrap();
        }
        let st = c.inner.state.lock();
        assert!(st.entries.is_empty());
        assert!(st.order.len() <= 64 + 1, "{}", st.order.len());
    }
}
