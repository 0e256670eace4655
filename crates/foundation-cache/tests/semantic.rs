//! Semantic lookup: threshold, scope isolation, verifier vetoes, embedder
//! failure fallback, and the OpenAI-compatible adapter against an in-process
//! HTTP server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests and their helpers fail loudly"
)]

mod support;

use std::sync::Arc;

use foundation_cache::semantic::{
    Embedder, HashingEmbedder, OpenAiEmbedder, Outcome, SemanticCache, SemanticConfig,
};
use foundation_cache::{CacheConfig, Error, Scope, TieredCache};
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use support::Calls;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn cache_with(embedder: Arc<dyn Embedder>, threshold: f32) -> SemanticCache<String> {
    let exact = TieredCache::builder(CacheConfig::new(1 << 20))
        .build()
        .unwrap();
    SemanticCache::builder(exact, embedder, SemanticConfig::new(threshold, 1_000))
        .build()
        .unwrap()
}

fn local(threshold: f32) -> SemanticCache<String> {
    cache_with(Arc::new(HashingEmbedder::new(384)), threshold)
}

async fn ask(
    c: &SemanticCache<String>,
    scope: &Scope,
    prompt: &str,
    answer: &str,
    calls: &Calls,
) -> (String, Outcome) {
    let (a, calls) = (answer.to_owned(), calls.clone());
    let r = c
        .get_or_compute(scope, prompt, move || async move {
            calls.bump();
            Ok::<_, std::io::Error>(a)
        })
        .await
        .unwrap();
    (r.value, r.outcome)
}

#[tokio::test]
async fn threshold_decides_and_similarity_is_reported() {
    let scope = Scope::new().with_tenant("t");
    let calls = Calls::default();
    let c = local(0.8);
    ask(&c, &scope, "How do I reset my password?", "A", &calls).await;
    let (v, o) = ask(&c, &scope, "how can I reset my password", "B", &calls).await;
    match o {
        Outcome::Semantic {
            similarity,
            matched,
        } => {
            assert!(similarity >= 0.8, "{similarity}");
            assert_eq!(&*matched, "How do I reset my password?");
        }
        other => panic!("expected semantic hit, got {other:?}"),
    }
    assert_eq!(v, "A");
    let (v, o) = ask(
        &c,
        &scope,
        "Summarize the quarterly earnings report",
        "C",
        &calls,
    )
    .await;
    assert_eq!(v, "C");
    assert!(
        matches!(o, Outcome::Miss { nearest: Some(s), vetoed: None } if s < 0.8),
        "{o:?}"
    );
    assert_eq!(calls.get(), 2);

    // The same pair under a stricter threshold is a near miss.
    let strict = local(0.99);
    let calls = Calls::default();
    ask(&strict, &scope, "How do I reset my password?", "A", &calls).await;
    let (v, o) = ask(&strict, &scope, "how can I reset my password", "B", &calls).await;
    assert_eq!(v, "B");
    assert!(
        matches!(o, Outcome::Miss { nearest: Some(s), .. } if (0.8..0.99).contains(&s)),
        "{o:?}"
    );
}

#[tokio::test]
async fn scopes_never_leak_semantically() {
    let c = local(0.5);
    let calls = Calls::default();
    let base = Scope::new()
        .with_tenant("acme")
        .with_model("m1")
        .with_param("temperature", "0");
    ask(
        &c,
        &base,
        "What is our refund policy for enterprise customers?",
        "acme's secret policy",
        &calls,
    )
    .await;
    for (i, other) in [
        base.clone().with_tenant("globex"),
        base.clone().with_model("m2"),
        base.clone().with_param("temperature", "1"),
        base.clone().with_param("system", "pirate"),
    ]
    .iter()
    .enumerate()
    {
        for prompt in [
            "What is our refund policy for enterprise customers?",
            "what's our refund policy for enterprise customers",
        ] {
            let own = format!("own answer {i}");
            let (v, o) = ask(&c, other, prompt, &own, &calls).await;
            assert_ne!(v, "acme's secret policy", "scope {i} leaked via {o:?}");
        }
    }
    // The owner still hits.
    let (v, o) = ask(
        &c,
        &base,
        "what's our refund policy for enterprise customers",
        "x",
        &calls,
    )
    .await;
    assert_eq!(v, "acme's secret policy");
    assert!(o.is_hit());
}

#[tokio::test]
async fn the_verifier_vetoes_opposite_near_duplicates() {
    let scope = Scope::new();
    let pairs = [
        (
            "How do I enable two-factor authentication?",
            "How do I disable two-factor authentication?",
        ),
        ("Is 1021 a prime number?", "Is 1023 a prime number?"),
        (
            "Should I take ibuprofen with food?",
            "Should I not take ibuprofen with food?",
        ),
    ];
    for (cached, asked) in pairs {
        // Without a verifier the embedding alone serves the wrong answer (GPTCache #694) ...
        let exact = TieredCache::builder(CacheConfig::new(1 << 20))
            .build()
            .unwrap();
        let naive = SemanticCache::builder(
            exact,
            Arc::new(HashingEmbedder::new(384)),
            SemanticConfig::new(0.7, 100),
        )
        .without_verifier()
        .build()
        .unwrap();
        let calls = Calls::default();
        ask(&naive, &scope, cached, "answer to the first", &calls).await;
        let (v, _) = ask(&naive, &scope, asked, "answer to the second", &calls).await;
        assert_eq!(
            v, "answer to the first",
            "{asked:?} must be lexically close enough to show the failure"
        );

        // ... the default verifier refuses it.
        let guarded = local(0.7);
        let calls = Calls::default();
        ask(&guarded, &scope, cached, "answer to the first", &calls).await;
        let (v, o) = ask(&guarded, &scope, asked, "answer to the second", &calls).await;
        assert_eq!(v, "answer to the second");
        assert!(
            matches!(
                o,
                Outcome::Miss {
                    vetoed: Some(_),
                    ..
                }
            ),
            "{o:?}"
        );
    }
}

#[derive(Debug)]
struct Broken;

impl Embedder for Broken {
    fn dimensions(&self) -> usize {
        8
    }
    fn embed<'a>(&'a self, _: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, Error>> {
        async { Err(Error::Embed("model server down".into())) }.boxed()
    }
}

/// Returns vectors of the wrong size.
#[derive(Debug)]
struct Liar;

impl Embedder for Liar {
    fn dimensions(&self) -> usize {
        8
    }
    fn embed<'a>(&'a self, t: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, Error>> {
        async move { Ok(t.iter().map(|_| vec![1.0; 3]).collect()) }.boxed()
    }
}

#[tokio::test]
async fn embedder_failure_falls_back_to_exact_keys() {
    for embedder in [Arc::new(Broken) as Arc<dyn Embedder>, Arc::new(Liar)] {
        let c = cache_with(embedder, 0.8);
        let scope = Scope::new();
        let calls = Calls::default();
        let (_, o) = ask(&c, &scope, "hello there", "A", &calls).await;
        assert_eq!(o, Outcome::EmbedFailed);
        let (v, o) = ask(&c, &scope, "hello there", "B", &calls).await;
        assert_eq!((v.as_str(), o), ("A", Outcome::Exact));
        let (v, _) = ask(&c, &scope, "hello there!", "C", &calls).await;
        assert_eq!(v, "C", "no semantic match without embeddings");
        assert_eq!(calls.get(), 2);
        assert_eq!(c.indexed(), 0);
    }
}

#[tokio::test]
async fn vanished_answers_are_forgotten_and_the_index_is_bounded() {
    let exact = TieredCache::builder(CacheConfig::new(1 << 20))
        .build()
        .unwrap();
    let c = SemanticCache::builder(
        exact,
        Arc::new(HashingEmbedder::new(128)),
        SemanticConfig::new(0.8, 3),
    )
    .build()
    .unwrap();
    let scope = Scope::new();
    let calls = Calls::default();
    ask(&c, &scope, "the first question about llamas", "A", &calls).await;
    c.exact().invalidate_scope(&scope).await.unwrap();
    let (v, _) = ask(&c, &scope, "the first question about llamas?", "B", &calls).await;
    assert_eq!(
        v, "B",
        "the stale vector did not resurrect a removed answer"
    );
    for i in 0..10 {
        ask(
            &c,
            &scope,
            &format!("unrelated question number {i} about topic {}", i * 7919),
            "x",
            &calls,
        )
        .await;
    }
    assert!(c.indexed() <= 3, "{}", c.indexed());
}

/// A tiny OpenAI-compatible embeddings server: answers with the local
/// embedder's vectors, in index-reversed order, optionally chunked, or fails.
async fn serve(mode: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(answer(s, mode));
        }
    });
    format!("http://{addr}/v1")
}

/// Answers one embeddings request on `s`.
async fn answer<S>(mut s: S, mode: &'static str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let body = loop {
        let n = s.read(&mut tmp).await.unwrap();
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p]).to_lowercase();
            assert!(head.starts_with("post /v1/embeddings http/1.1"), "{head}");
            assert!(head.contains("authorization: bearer sk-test"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            if buf.len() >= p + 4 + len {
                break buf[p + 4..p + 4 + len].to_vec();
            }
        }
    };
    let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(req["model"], "test-model");
    let e = HashingEmbedder::new(16);
    let inputs: Vec<String> = req["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let mut data: Vec<serde_json::Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| serde_json::json!({"object": "embedding", "index": i, "embedding": e.embed_one(t)}))
            .collect();
    data.reverse();
    let json = serde_json::to_vec(
        &serde_json::json!({"object": "list", "data": data, "model": "test-model"}),
    )
    .unwrap();
    let resp = match mode {
        "fail" => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 8\r\n\r\noverload".to_vec(),
        "chunked" => {
            let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for c in json.chunks(100) {
                r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                r.extend_from_slice(c);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        }
        _ => {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                json.len()
            )
            .into_bytes();
            r.extend_from_slice(&json);
            r
        }
    };
    s.write_all(&resp).await.unwrap();
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn openai_adapter_talks_to_a_real_http_server() {
    let texts: Vec<String> = ["alpha beta", "gamma", "delta epsilon zeta"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let local = HashingEmbedder::new(16);
    for mode in ["length", "chunked"] {
        let e = OpenAiEmbedder::new(&serve(mode).await, "test-model", 16)
            .unwrap()
            .with_api_key("sk-test")
            .with_max_batch(2);
        let got = e.embed(&texts).await.unwrap();
        let want: Vec<Vec<f32>> = texts.iter().map(|t| local.embed_one(t)).collect();
        assert_eq!(got, want, "{mode}: order restored across batches");
    }
    let failing = OpenAiEmbedder::new(&serve("fail").await, "test-model", 16)
        .unwrap()
        .with_api_key("sk-test");
    let err = failing.embed(&texts).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    // Wrong dimensions are caught.
    let wrong = OpenAiEmbedder::new(&serve("length").await, "test-model", 32)
        .unwrap()
        .with_api_key("sk-test");
    assert!(
        wrong
            .embed(&texts)
            .await
            .unwrap_err()
            .to_string()
            .contains("dimensions")
    );
    // Nothing listening: a clear connection error, and the semantic cache falls back.
    let dead = OpenAiEmbedder::new("http://127.0.0.1:1/v1", "test-model", 16).unwrap();
    let c = cache_with(Arc::new(dead), 0.8);
    let calls = Calls::default();
    let (_, o) = ask(&c, &Scope::new(), "q", "a", &calls).await;
    assert_eq!(o, Outcome::EmbedFailed);
}

#[tokio::test]
async fn semantic_cache_works_through_the_http_embedder() {
    let e = OpenAiEmbedder::new(&serve("length").await, "test-model", 16)
        .unwrap()
        .with_api_key("sk-test");
    let c = cache_with(Arc::new(e), 0.75);
    let calls = Calls::default();
    let scope = Scope::new();
    ask(
        &c,
        &scope,
        "please translate good morning to french",
        "bonjour",
        &calls,
    )
    .await;
    let (v, o) = ask(
        &c,
        &scope,
        "translate good morning to french please",
        "x",
        &calls,
    )
    .await;
    assert_eq!(v, "bonjour", "{o:?}");
}

#[tokio::test]
async fn batched_inserts_are_searchable() {
    let c = local(0.8);
    let scope = Scope::new().with_tenant("t");
    c.insert_many(
        &scope,
        vec![
            ("what are your opening hours".into(), "9-5".into()),
            ("where is your office located".into(), "Berlin".into()),
        ],
    )
    .await
    .unwrap();
    let (v, o) = c
        .lookup(&scope, "Where is your office located?")
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("Berlin"), "{o:?}");
    let (v, _) = c
        .lookup(
            &Scope::new().with_tenant("u"),
            "where is your office located",
        )
        .await
        .unwrap();
    assert_eq!(v, None);
}

#[test]
fn invalid_semantic_config_names_the_field() {
    let exact = TieredCache::<String>::builder(CacheConfig::new(1 << 20))
        .build()
        .unwrap();
    let e = SemanticCache::builder(
        exact,
        Arc::new(HashingEmbedder::new(16)),
        SemanticConfig::new(1.5, 0),
    )
    .build()
    .unwrap_err();
    let s = e.to_string();
    assert!(s.contains("threshold") && s.contains("max_vectors"), "{s}");
}

#[tokio::test]
async fn the_approximate_index_keeps_hits_and_scopes() {
    let exact = TieredCache::builder(CacheConfig::new(64 << 20))
        .build()
        .unwrap();
    let config = SemanticConfig {
        ann_threshold: 64,
        ..SemanticConfig::new(0.8, 10_000)
    };
    let c = SemanticCache::builder(exact, Arc::new(HashingEmbedder::new(384)), config)
        .build()
        .unwrap();
    let topics = [
        "invoice",
        "refund",
        "password",
        "printer",
        "vacation",
        "payroll",
        "laptop",
        "badge",
        "parking",
        "expense",
        "travel",
        "insurance",
        "pension",
        "training",
        "onboarding",
        "offboarding",
        "VPN",
        "email",
        "calendar",
        "wifi",
    ];
    let prompts: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "question {i}: how does the {} process work for team {}",
                topics[i % 20],
                i / 20
            )
        })
        .collect();
    for tenant in ["a", "b"] {
        let scope = Scope::new().with_tenant(tenant);
        c.insert_many(
            &scope,
            prompts
                .iter()
                .map(|p| (p.clone(), format!("{tenant}: {p}")))
                .collect(),
        )
        .await
        .unwrap();
    }
    c.compact().await;
    assert_eq!(
        c.approximate_partitions(),
        usize::from(cfg!(feature = "ann")) * 2
    );
    let mut hits = 0;
    for (i, p) in prompts.iter().enumerate().step_by(7) {
        let asked = format!("{p} please");
        for tenant in ["a", "b"] {
            let (v, o) = c
                .lookup(&Scope::new().with_tenant(tenant), &asked)
                .await
                .unwrap();
            if let Some(v) = v {
                assert_eq!(v, format!("{tenant}: {}", prompts[i]), "{o:?}");
                hits += 1;
            }
        }
    }
    assert!(
        hits >= 80,
        "{hits} of 86 lookups hit (through the HNSW index with the `ann` feature)"
    );

    // The index (read back from HNSW when it is on) moves to another instance.
    let snapshot = c.export_index();
    assert_eq!(snapshot.len(), 600);
    let d = SemanticCache::builder(
        c.exact().clone(),
        Arc::new(HashingEmbedder::new(384)),
        config,
    )
    .build()
    .unwrap();
    assert_eq!(d.import_index(snapshot).unwrap(), 600);
    d.compact().await;
    assert_eq!(
        d.approximate_partitions(),
        usize::from(cfg!(feature = "ann")) * 2
    );
    let (v, o) = d
        .lookup(
            &Scope::new().with_tenant("b"),
            &format!("{} please", prompts[14]),
        )
        .await
        .unwrap();
    assert_eq!(v, Some(format!("b: {}", prompts[14])), "{o:?}");
}

#[tokio::test]
async fn the_threshold_optimizer_learns_where_paraphrases_end() {
    use foundation_cache::semantic::{LabelledQuery, Objective};
    let c = cache_with(Arc::new(HashingEmbedder::new(384)), 0.99);
    let scope = Scope::new().with_tenant("acme");
    let cached = [
        "how do I reset my password",
        "what is the refund policy for annual plans",
        "which regions does the service run in",
    ];
    c.insert_many(
        &scope,
        cached
            .iter()
            .map(|p| ((*p).to_owned(), format!("answer: {p}")))
            .collect(),
    )
    .await
    .unwrap();
    let queries = vec![
        LabelledQuery::should_match(&scope, "how do i reset my password please", cached[0]),
        LabelledQuery::should_match(&scope, "how do I reset my password?", cached[0]),
        LabelledQuery::should_match(
            &scope,
            "what is the refund policy for annual plans?",
            cached[1],
        ),
        LabelledQuery::should_match(
            &scope,
            "which regions does the service run in today",
            cached[2],
        ),
        LabelledQuery::should_miss(&scope, "how do I change my billing address"),
        LabelledQuery::should_miss(&scope, "what is the refund policy for monthly plans"),
        LabelledQuery::should_miss(&scope, "which languages does the service support"),
    ];
    // At 0.99 the paraphrases miss.
    let (v, _) = c
        .lookup(&scope, "how do i reset my password please")
        .await
        .unwrap();
    assert!(v.is_none());

    let report = c.optimize_threshold(&queries, Objective::F1).await.unwrap();
    assert_eq!(report.queries, 7);
    assert!((report.recall - 1.0).abs() < 1e-9, "{report:?}");
    assert!(
        report.threshold < 0.99 && report.threshold > 0.3,
        "{report:?}"
    );
    c.set_threshold(report.threshold).unwrap();
    assert!((c.threshold() - report.threshold).abs() < f32::EPSILON);
    for q in &queries {
        let (v, outcome) = c.lookup(&q.scope, &q.prompt).await.unwrap();
        match &q.expected {
            Some(e) => assert_eq!(
                v.as_deref(),
                Some(format!("answer: {e}").as_str()),
                "{q:?} {outcome:?}"
            ),
            // The verifier or the threshold keeps these out.
            None if report.precision >= 1.0 => assert!(v.is_none(), "{q:?} {outcome:?}"),
            None => {}
        }
    }
    // Nothing is indexed or computed by tuning.
    assert_eq!(c.indexed(), 3);

    assert!(c.set_threshold(0.0).is_err() && c.set_threshold(f32::NAN).is_err());
    let other = Scope::new().with_tenant("globex");
    let e = c
        .optimize_threshold(
            &[LabelledQuery::should_match(
                &other,
                "how do I reset my password",
                cached[0],
            )],
            Objective::F1,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("queries"), "{e}");
}

/// The embeddings server behind TLS, with the test CA's `localhost`
/// certificate (tests/data).
#[cfg(feature = "tls")]
async fn serve_tls(mode: &'static str, bind: &str) -> u16 {
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{ServerConfig, crypto};
    let certs = vec![CertificateDer::from_pem_slice(include_bytes!("data/localhost.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("data/localhost.key")).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind((bind, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                if let Ok(tls) = acceptor.accept(s).await {
                    answer(tls, mode).await;
                }
            });
        }
    });
    port
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn openai_adapter_speaks_https_and_checks_the_certificate() {
    let texts = vec!["alpha beta".to_owned(), "gamma".to_owned()];
    let local = HashingEmbedder::new(16);
    let port = serve_tls("length", "127.0.0.1").await;
    let url = format!("https://localhost:{port}/v1");
    let trusted = OpenAiEmbedder::new(&url, "test-model", 16)
        .unwrap()
        .with_api_key("sk-test")
        .with_root_certificates_pem(include_bytes!("data/test-ca.pem"))
        .unwrap();
    assert!(
        format!("{trusted:?}").contains("https://localhost"),
        "{trusted:?}"
    );
    let got = trusted.embed(&texts).await.unwrap();
    assert_eq!(
        got,
        texts.iter().map(|t| local.embed_one(t)).collect::<Vec<_>>()
    );
    let chunked = OpenAiEmbedder::new(
        &format!(
            "https://localhost:{}/v1",
            serve_tls("chunked", "127.0.0.1").await
        ),
        "test-model",
        16,
    )
    .unwrap()
    .with_api_key("sk-test")
    .with_root_certificates_pem(include_bytes!("data/test-ca.pem"))
    .unwrap();
    assert_eq!(chunked.embed(&texts).await.unwrap().len(), 2);

    // Mozilla's roots alone do not trust the test CA.
    let untrusted = OpenAiEmbedder::new(&url, "test-model", 16)
        .unwrap()
        .with_api_key("sk-test");
    let err = untrusted.embed(&texts).await.unwrap_err().to_string();
    assert!(
        err.contains("certificate") || err.contains("Certificate"),
        "{err}"
    );
    // The certificate names localhost and 127.0.0.1, not 127.0.0.2.
    let other = serve_tls("length", "127.0.0.2").await;
    let wrong_name =
        OpenAiEmbedder::new(&format!("https://127.0.0.2:{other}/v1"), "test-model", 16)
            .unwrap()
            .with_root_certificates_pem(include_bytes!("data/test-ca.pem"))
            .unwrap();
    let err = wrong_name.embed(&texts).await.unwrap_err().to_string();
    assert!(
        err.contains("NotValidForName") || err.contains("not valid for"),
        "{err}"
    );

    // Bad root material and roots for plain http are refused with the field named.
    let e = OpenAiEmbedder::new(&url, "m", 16)
        .unwrap()
        .with_root_certificates_pem(b"not pem")
        .unwrap_err();
    assert!(e.to_string().contains("root_certificates"), "{e}");
    let e = OpenAiEmbedder::new("http://127.0.0.1:9/v1", "m", 16)
        .unwrap()
        .with_root_certificates_pem(include_bytes!("data/test-ca.pem"))
        .unwrap_err();
    assert!(e.to_string().contains("https"), "{e}");
}

#[tokio::test]
async fn index_snapshots_are_checked_before_import() {
    let c = cache_with(Arc::new(HashingEmbedder::new(384)), 0.8);
    let scope = Scope::new().with_tenant("acme");
    c.insert_many(&scope, vec![("hello there".to_owned(), "hi".to_owned())])
        .await
        .unwrap();
    let mut json = serde_json::to_value(c.export_index()).unwrap();
    // Another embedder's dimensions.
    let small = cache_with(Arc::new(HashingEmbedder::new(16)), 0.8);
    let e = small
        .import_index(serde_json::from_value(json.clone()).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("snapshot.dimensions"), "{e}");
    // A malformed vector names its entry; nothing is imported.
    json["entries"][0]["vector"] = serde_json::json!([1.0, 2.0]);
    let fresh = cache_with(Arc::new(HashingEmbedder::new(384)), 0.8);
    let e = fresh
        .import_index(serde_json::from_value(json.clone()).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("snapshot.entries[0].vector"), "{e}");
    assert_eq!(fresh.indexed(), 0);
    json["version"] = serde_json::json!(9);
    assert!(
        fresh
            .import_index(serde_json::from_value(json).unwrap())
            .unwrap_err()
            .to_string()
            .contains("version")
    );
}

#[tokio::test]
async fn paraphrases_missing_together_share_one_computation() {
    let c = cache_with(Arc::new(HashingEmbedder::new(384)), 0.8);
    let scope = Scope::new().with_tenant("acme");
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let release = Arc::new(tokio::sync::Notify::new());
    let first = {
        let (c, scope, calls, release) = (c.clone(), scope.clone(), calls.clone(), release.clone());
        tokio::spawn(async move {
            c.get_or_compute(&scope, "How do I reset my password?", move || async move {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = started_tx.send(());
                release.notified().await;
                Ok::<_, std::io::Error>("Settings → Security".to_string())
            })
            .await
        })
    };
    started_rx.await.unwrap();
    let ask = |prompt: &'static str, scope: Scope| {
        let (c, calls) = (c.clone(), calls.clone());
        tokio::spawn(async move {
            c.get_or_compute(&scope, prompt, move || async move {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, std::io::Error>(format!("computed for {prompt}"))
            })
            .await
        })
    };
    // While the first is computing: a paraphrase, the opposite question and another tenant.
    let paraphrase = ask("how do i reset my password please", scope.clone());
    let opposite = ask("How do I not reset my password?", scope.clone());
    let other_tenant = ask(
        "how do i reset my password please",
        Scope::new().with_tenant("globex"),
    );
    let opposite = opposite.await.unwrap().unwrap();
    let other_tenant = other_tenant.await.unwrap().unwrap();
    release.notify_one();
    let first = first.await.unwrap().unwrap();
    let paraphrase = paraphrase.await.unwrap().unwrap();
    assert_eq!(first.value, "Settings → Security");
    assert_eq!(paraphrase.value, "Settings → Security");
    assert!(
        matches!(&paraphrase.outcome, Outcome::Coalesced { matched, .. } if &**matched == "How do I reset my password?"),
        "{:?}",
        paraphrase.outcome
    );
    assert!(paraphrase.outcome.is_hit());
    // The vetoed near-duplicate and the other tenant were computed on their own.
    assert_eq!(
        opposite.value,
        "computed for How do I not reset my password?"
    );
    assert_eq!(
        other_tenant.value,
        "computed for how do i reset my password please"
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    // Nothing is left registered: a later paraphrase is an ordinary semantic hit.
    let later = c
        .get_or_compute(&scope, "how do I reset my password", || async {
            Ok::<_, std::io::Error>("unused".to_string())
        })
        .await
        .unwrap();
    assert!(
        matches!(later.outcome, Outcome::Semantic { .. }),
        "{:?}",
        later.outcome
    );
}
