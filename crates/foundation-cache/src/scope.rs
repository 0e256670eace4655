//! Scopes and keys: what makes two requests the *same* request.
//!
//! A cached answer may be reused only by a request with the same scope: the
//! same tenant, the same model and the same answer-changing parameters
//! (temperature, system prompt, tool set, conversation id, …). The scope is
//! part of every key, every stored entry and every semantic index partition.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The context that decides whether a cached answer applies: tenant, model
/// and every parameter that changes the answer.
///
/// ```
/// use foundation_cache::Scope;
/// let a = Scope::new().with_tenant("acme").with_model("gpt-4o").with_param("temperature", "0");
/// let b = Scope::new().with_model("gpt-4o").with_param("temperature", "0").with_tenant("acme");
/// assert_eq!(a.id(), b.id()); // order of construction does not matter
/// assert_ne!(a.id(), a.clone().with_param("temperature", "0.7").id());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// The tenant (customer, user, API key) the answer belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The model that produced the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Parameters that change the answer (sorted by name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

// === impl Scope ===

impl Scope {
    /// The empty scope (shared by everything that sets nothing).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the tenant.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the model.
    #[must_use]
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Adds an answer-changing parameter.
    #[must_use]
    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(name.into(), value.into());
        self
    }

    /// The canonical text of this scope: length-prefixed fields, so no two
    /// different scopes share it.
    #[must_use]
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        let mut field = |tag: &str, v: &str| {
            out.push_str(tag);
            out.push_str(&v.len().to_string());
            out.push(':');
            out.push_str(v);
        };
        if let Some(t) = &self.tenant {
            field("t", t);
        }
        if let Some(m) = &self.model {
            field("m", m);
        }
        for (k, v) in &self.params {
            field("k", k);
            field("v", v);
        }
        out
    }

    /// The scope's identity: its canonical text and a stable 64-bit hash.
    #[must_use]
    pub fn id(&self) -> ScopeId {
        ScopeId::from_canonical(self.canonical())
    }
}

/// A scope reduced to its canonical text and a stable hash of it.
///
/// The hash (FNV-1a, 64 bit) is stable across processes and versions, so it
/// can name keys in Redis and rows in SQLite. It is **not** trusted for
/// isolation: equality compares the full canonical text, and shared tiers
/// store the text with the entry and check it on read, so a hash collision
/// (even a crafted one) can never serve one scope's entry to another.
#[derive(Clone)]
pub struct ScopeId {
    hash: u64,
    canonical: Arc<str>,
}

// === impl ScopeId ===

impl ScopeId {
    pub(crate) fn from_canonical(canonical: String) -> Self {
        Self {
            hash: fnv1a(canonical.as_bytes()),
            canonical: Arc::from(canonical),
        }
    }

    /// The stable 64-bit hash.
    #[must_use]
    pub fn hash64(&self) -> u64 {
        self.hash
    }

    /// The canonical text.
    #[must_use]
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
}

impl PartialEq for ScopeId {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && (Arc::ptr_eq(&self.canonical, &other.canonical) || self.canonical == other.canonical)
    }
}
impl Eq for ScopeId {}

impl Hash for ScopeId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl fmt::Debug for ScopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopeId({:016x}, {:?})", self.hash, self.canonical)
    }
}

impl From<&ScopeId> for ScopeId {
    fn from(s: &ScopeId) -> Self {
        s.clone()
    }
}

impl From<&Scope> for ScopeId {
    fn from(s: &Scope) -> Self {
        s.id()
    }
}

/// FNV-1a, 64 bit: tiny, stable, good enough to spread keys (not for isolation).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A cache key: a name inside a scope. Cheap to clone.
///
/// ```
/// use foundation_cache::{Key, Scope};
/// let scope = Scope::new().with_tenant("acme");
/// let k = Key::new(&scope, "summary:doc-17");
/// assert_eq!(k.name(), "summary:doc-17");
/// assert_ne!(k, Key::new(&Scope::new().with_tenant("globex"), "summary:doc-17"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    scope: ScopeId,
    name: Arc<str>,
}

// === impl Key ===

impl Key {
    /// The key `name` inside `scope`.
    pub fn new(scope: impl Into<ScopeId>, name: impl AsRef<str>) -> Self {
        Self {
            scope: scope.into(),
            name: Arc::from(name.as_ref()),
        }
    }

    /// The key `name` in the empty scope.
    pub fn unscoped(name: impl AsRef<str>) -> Self {
        Self::new(&Scope::new(), name)
    }

    /// The scope.
    #[must_use]
    pub fn scope(&self) -> &ScopeId {
        &self.scope
    }

    /// The name inside the scope.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:016x}/{:?})", self.scope.hash, self.name)
    }
}

/// What an invalidation removes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Selector {
    /// One key.
    Key(Key),
    /// Every entry carrying this tag.
    Tag(String),
    /// Every key in a scope whose name starts with the prefix.
    Prefix(ScopeId, String),
    /// Every key in a scope.
    Scope(ScopeId),
    /// Everything.
    All,
}

// === impl Selector ===

impl Selector {
    /// Whether an entry stored under `key` with `tags` is selected.
    #[must_use]
    pub fn matches(&self, key: &Key, tags: &[String]) -> bool {
        match self {
            Self::Key(k) => k == key,
            Self::Tag(t) => tags.iter().any(|x| x == t),
            Self::Prefix(s, p) => &key.scope == s && key.name.starts_with(p.as_str()),
            Self::Scope(s) => &key.scope == s,
            Self::All => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_is_unambiguous() {
        // Concatenation tricks must not produce equal scopes.
        let a = Scope::new().with_param("ab", "c");
        let b = Scope::new().with_param("a", "bc");
        assert_ne!(a.canonical(), b.canonical());
        let t = Scope::new().with_tenant("x").with_model("");
        let m = Scope::new().with_model("x");
        assert_ne!(t.id(), m.id());
    }

    proptest::proptest! {
        #[test]
        fn different_scopes_have_different_canonical_text(
            a in proptest::option::of(".{0,6}"), b in proptest::option::of(".{0,6}"),
            pa in proptest::collection::btree_map(".{0,4}", ".{0,4}", 0..3),
            c in proptest::option::of(".{0,6}"), d in proptest::option::of(".{0,6}"),
            pb in proptest::collection::btree_map(".{0,4}", ".{0,4}", 0..3),
        ) {
            let x = Scope { tenant: a, model: b, params: pa };
            let y = Scope { tenant: c, model: d, params: pb };
            proptest::prop_assert_eq!(x == y, x.canonical() == y.canonical());
            proptest::prop_assert_eq!(x == y, x.id() == y.id());
        }
    }

    #[test]
    fn equality_does_not_trust_the_hash() {
        let a = ScopeId {
            hash: 1,
            canonical: Arc::from("a"),
        };
        let b = ScopeId {
            hash: 1,
            canonical: Arc::from("b"),
        };
        assert_ne!(a, b);
    }

    #[test]
    fn selectors_match() {
        let s = Scope::new().with_tenant("t").id();
        let k = Key::new(s.clone(), "user:1:profile");
        assert!(Selector::Prefix(s.clone(), "user:1:".into()).matches(&k, &[]));
        assert!(!Selector::Prefix(s.clone(), "user:2:".into()).matches(&k, &[]));
        assert!(!Selector::Prefix(Scope::new().id(), "user:1:".into()).matches(&k, &[]));
        assert!(Selector::Tag("doc".into()).matches(&k, &["doc".into()]));
        assert!(Selector::Scope(s).matches(&k, &[]));
    }
}
