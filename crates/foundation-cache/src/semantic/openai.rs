//! An [`Embedder`] for OpenAI-compatible `POST /v1/embeddings` endpoints
//! (OpenAI's API shape, served by vLLM, Ollama, text-embeddings-inference,
//! LiteLLM, …).
//!
//! The transport is a deliberately small HTTP/1.1 client on tokio's
//! `TcpStream`: one request per connection (`Connection: close`),
//! `Content-Length` or chunked responses, a size cap and a timeout, and —
//! with the `tls` feature — `https://` through rustls (ring provider,
//! Mozilla's root certificates from `webpki-roots`, plus any roots you add).
//! That reaches OpenAI itself as well as an embedding server beside the
//! service, without pulling a general HTTP stack into every user of this
//! crate. To use your own HTTP client instead, implement [`Embedder`] over
//! it, reusing [`parse_response`] and [`request_body`].

use std::fmt;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::error::Error;
use crate::semantic::Embedder;

/// Largest response accepted (a batch of 128 × 3072-d vectors as JSON is ~8 MB).
const MAX_RESPONSE: usize = 64 << 20;

/// An embedder calling `POST {base}/embeddings`.
///
/// ```
/// use foundation_cache::semantic::OpenAiEmbedder;
/// let local = OpenAiEmbedder::new("http://127.0.0.1:8080/v1", "all-minilm", 384).unwrap();
/// // https:// needs the `tls` feature.
/// let openai = OpenAiEmbedder::new("https://api.openai.com/v1", "text-embedding-3-small", 1536);
/// assert_eq!(openai.is_ok(), cfg!(feature = "tls"));
/// assert!(OpenAiEmbedder::new("ftp://example.com", "m", 8).is_err());
/// ```
#[derive(Clone)]
pub struct OpenAiEmbedder {
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    host: String,
    port: u16,
    path: String,
    model: String,
    dims: usize,
    api_key: Option<String>,
    timeout: Duration,
    max_batch: usize,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field(
                "endpoint",
                &format_args!(
                    "{}://{}:{}{}",
                    self.scheme(),
                    self.host,
                    self.port,
                    self.path
                ),
            )
            .field("model", &self.model)
            .field("dims", &self.dims)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn invalid(field: &str, msg: impl Into<String>) -> Error {
    foundation_core::ValidationErrors::single(field, msg).into()
}

// === impl OpenAiEmbedder ===

impl OpenAiEmbedder {
    /// An embedder for `model` at `base_url` (e.g. `http://127.0.0.1:8080/v1`,
    /// or `https://api.openai.com/v1` with the `tls` feature), producing
    /// `dims`-dimensional vectors.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that is not `http[s]://host[:port][/path]`
    /// (`https` only with the `tls` feature) or `dims == 0`.
    pub fn new(base_url: &str, model: impl Into<String>, dims: usize) -> Result<Self, Error> {
        let (rest, https) = if let Some(r) = base_url.strip_prefix("http://") {
            (r, false)
        } else if let Some(r) = base_url.strip_prefix("https://") {
            (r, true)
        } else {
            return Err(invalid(
                "base_url",
                format!("{base_url:?}: expected http:// or https://"),
            ));
        };
        if https && !cfg!(feature = "tls") {
            return Err(invalid(
                "base_url",
                format!("{base_url:?}: https:// needs foundation-cache's `tls` feature"),
            ));
        }
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| invalid("base_url", format!("bad port {p:?}")))?,
            ),
            None => (authority, if https { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(invalid("base_url", "missing host"));
        }
        if dims == 0 {
            return Err(invalid("dims", "must be at least 1"));
        }
        let path = format!("/{}/embeddings", path.trim_end_matches('/')).replace("//", "/");
        Ok(Self {
            #[cfg(feature = "tls")]
            tls: https.then(|| tls::client_config(&[])).transpose()?,
            host: host.to_owned(),
            port,
            path,
            model: model.into(),
            dims,
            api_key: None,
            timeout: Duration::from_secs(30),
            max_batch: 128,
        })
    }

    fn scheme(&self) -> &'static str {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return "https";
        }
        "http"
    }

    /// Also trusts the certificates in `pem` (a private CA, a test server),
    /// besides Mozilla's roots; for `https://` endpoints.
    ///
    /// # Errors
    /// [`Error::Config`] when `pem` holds no usable certificate or the
    /// endpoint is not `https://`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn with_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        if self.tls.is_none() {
            return Err(invalid("base_url", "extra roots need an https:// endpoint"));
        }
        self.tls = Some(tls::client_config(pem)?);
        Ok(self)
    }

    /// Sends `Authorization: Bearer {key}`.
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Per-request timeout (default 30 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest batch per request (default 128; larger inputs are split).
    #[must_use]
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    async fn call(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, Error> {
        let body = request_body(&self.model, texts);
        let mut req = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.path,
            self.host,
            self.port,
            body.len()
        );
        if let Some(k) = &self.api_key {
            req.push_str(&format!("Authorization: Bearer {k}\r\n"));
        }
        req.push_str("\r\n");
        let round_trip = async {
            let s = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
            #[cfg(feature = "tls")]
            if let Some(config) = &self.tls {
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let s = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, s)
                    .await?;
                return exchange(s, &req, &body).await;
            }
            exchange(s, &req, &body).await
        };
        let raw = tokio::time::timeout(self.timeout, round_trip)
            .await
            .map_err(|_| Error::Embed(format!("no response within {:?}", self.timeout)))?
            .map_err(|e| {
                Error::Embed(format!(
                    "request to {}://{}:{} failed: {e}",
                    self.scheme(),
                    self.host,
                    self.port
                ))
            })?;
        if raw.len() > MAX_RESPONSE {
            return Err(Error::Embed(format!(
                "response larger than {MAX_RESPONSE} bytes"
            )));
        }
        let (status, body) = parse_http(&raw)?;
        if status != 200 {
            let snippet: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            return Err(Error::Embed(format!("server answered {status}: {snippet}")));
        }
        parse_response(&body, texts.len(), self.dims)
    }
}

impl Embedder for OpenAiEmbedder {
    fn dimensions(&self) -> usize {
        self.dims
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, Error>> {
        async move {
            let mut out = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(self.max_batch) {
                out.extend(self.call(chunk).await?);
            }
            Ok(out)
        }
        .boxed()
    }
}

/// Sends the request and reads the whole response (the server closes the
/// connection). A TLS peer that closes without `close_notify` after sending
/// its response is accepted: the HTTP framing is checked when parsing.
async fn exchange<S>(mut s: S, head: &str, body: &[u8]) -> std::io::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    s.flush().await?;
    let mut buf = Vec::new();
    match (&mut s)
        .take(MAX_RESPONSE as u64 + 1)
        .read_to_end(&mut buf)
        .await
    {
        Ok(_) => Ok(buf),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => Ok(buf),
        Err(e) => Err(e),
    }
}

#[cfg(feature = "tls")]
mod tls {
    use std::sync::Arc;

    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

    use super::invalid;
    use crate::error::Error;

    /// A client configuration trusting Mozilla's roots and the certificates
    /// in `extra_pem`.
    pub(super) fn client_config(extra_pem: &[u8]) -> Result<Arc<ClientConfig>, Error> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if !extra_pem.is_empty() {
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(extra_pem) {
                let cert =
                    cert.map_err(|e| invalid("root_certificates", format!("bad PEM: {e}")))?;
                roots.add(cert).map_err(|e| {
                    invalid("root_certificates", format!("unusable certificate: {e}"))
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(invalid(
                    "root_certificates",
                    "no certificate in the PEM data",
                ));
            }
        }
        let config =
            ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid("tls", e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// The JSON request body for `model` and `texts`.
#[must_use]
pub fn request_body(model: &str, texts: &[String]) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({ "model": model, "input": texts, "encoding_format": "float" }),
    )
    .unwrap_or_default()
}

#[derive(serde::Deserialize)]
struct Response {
    data: Vec<Datum>,
}

#[derive(serde::Deserialize)]
struct Datum {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

/// Parses an `/embeddings` response body, ordering by `index` and checking
/// the count and dimensions.
///
/// # Errors
/// [`Error::Embed`] naming what is wrong.
pub fn parse_response(body: &[u8], expected: usize, dims: usize) -> Result<Vec<Vec<f32>>, Error> {
    let r: Response = serde_json::from_slice(body)
        .map_err(|e| Error::Embed(format!("bad embeddings response: {e}")))?;
    if r.data.len() != expected {
        return Err(Error::Embed(format!(
            "expected {expected} embeddings, got {}",
            r.data.len()
        )));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (i, d) in r.data.into_iter().enumerate() {
        let at = d.index.unwrap_or(i);
        if d.embedding.len() != dims {
            return Err(Error::Embed(format!(
                "embedding {at} has {} dimensions, expected {dims}",
                d.embedding.len()
            )));
        }
        match slots.get_mut(at) {
            Some(slot @ None) => *slot = Some(d.embedding),
            _ => return Err(Error::Embed(format!("bad or repeated index {at}"))),
        }
    }
    slots
        .into_iter()
        .map(|s| s.ok_or_else(|| Error::Embed("missing index".into())))
        .collect()
}

/// Splits a raw HTTP/1.1 response into status and (de-chunked) body.
fn parse_http(raw: &[u8]) -> Result<(u16, Vec<u8>), Error> {
    let bad = |m: &str| Error::Embed(format!("bad HTTP response: {m}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("non-UTF-8 header"))?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = Some(v.parse::<usize>().map_err(|_| bad("bad content-length"))?);
            }
        }
    }
    if chunked {
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("truncated chunk size"))?;
            let size_txt = std::str::from_utf8(&rest[..eol]).map_err(|_| bad("chunk size"))?;
            let size = usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("chunk size"))?;
            rest = &rest[eol + 2..];
            if size == 0 {
                return Ok((status, out));
            }
            if rest.len() < size + 2 {
                return Err(bad("truncated chunk"));
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    }
    match length {
        Some(n) if body.len() < n => Err(bad("truncated body")),
        Some(n) => Ok((status, body[..n].to_vec())),
        None => Ok((status, body.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked_bodies() {
        let (s, b) = parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiEXTRA").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"hi"[..]));
        let (s, b) = parse_http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"abcde"[..]));
        assert!(parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").is_err());
        assert!(parse_http(b"garbage").is_err());
    }

    #[test]
    fn response_checks_count_dims_and_order() {
        let ok = br#"{"data":[{"embedding":[3,4],"index":1},{"embedding":[1,2],"index":0}]}"#;
        assert_eq!(
            parse_response(ok, 2, 2).unwrap(),
            vec![vec![1.0, 2.0], vec![3.0, 4.0]]
        );
        assert!(
            parse_response(ok, 3, 2)
                .unwrap_err()
                .to_string()
                .contains("expected 3")
        );
        assert!(
            parse_response(ok, 2, 3)
                .unwrap_err()
                .to_string()
                .contains("dimensions")
        );
        let dup = br#"{"data":[{"embedding":[3,4],"index":0},{"embedding":[1,2],"index":0}]}"#;
        assert!(parse_response(dup, 2, 2).is_err());
    }

    #[test]
    fn urls() {
        let e = OpenAiEmbedder::new("http://localhost:11434/v1/", "m", 4).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("localhost", 11434, "/v1/embeddings")
        );
        let e = OpenAiEmbedder::new("http://emb", "m", 4).unwrap();
        assert_eq!((e.port, e.path.as_str()), (80, "/embeddings"));
        assert!(OpenAiEmbedder::new("http://h:99999", "m", 4).is_err());
        assert!(OpenAiEmbedder::new("http://h", "m", 0).is_err());
        assert!(!format!("{:?}", e.with_api_key("sk-secret")).contains("sk-secret"));
    }
}
