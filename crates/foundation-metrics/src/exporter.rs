//! An HTTP `/metrics` endpoint and the upkeep task, on tokio.
//!
//! The responder is a deliberately small HTTP/1.1 server on a tokio
//! `TcpListener`: one request per connection (`Connection: close`), `GET`
//! and `HEAD` on the configured path, a bounded request head (8 KiB) read
//! under a timeout, and a bounded number of connections served at once.
//! Prometheus scrapes need nothing more, and this keeps hyper and its
//! dependency tree out of the application (metrics-exporter-prometheus's
//! `http-listener` feature pulls hyper, hyper-util and http-body-util).
//!
//! Upkeep (window rotation, idle expiry) runs on its own timer whether or
//! not anyone scrapes, so windows stay sharp and memory stays flat either way.
//!
//! ```no_run
//! # async fn run() -> Result<(), foundation_metrics::Error> {
//! use foundation_metrics::{MetricsRecorder, exporter::Exporter};
//!
//! let handle = MetricsRecorder::builder().build()?.install()?;
//! let exporter = Exporter::builder(handle)
//!     .with_listen_addr(([0, 0, 0, 0], 9000).into())
//!     .spawn()
//!     .await?;
//! println!("metrics at http://{}/metrics", exporter.local_addr());
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::prometheus::CONTENT_TYPE;
use crate::recorder::MetricsHandle;

const MAX_HEAD: usize = 8 * 1024;

/// Builds and spawns an [`Exporter`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ExporterBuilder {
    handle: MetricsHandle,
    addr: SocketAddr,
    path: String,
    upkeep_interval: Duration,
    request_timeout: Duration,
    max_connections: usize,
}

// === impl ExporterBuilder ===

impl ExporterBuilder {
    /// Address to listen on (default `127.0.0.1:9000`; port 0 picks one).
    pub fn with_listen_addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Path served (default `/metrics`).
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// How often upkeep runs (default 5 s; keep it at or below the finest
    /// window interval). Zero disables the upkeep task.
    pub fn with_upkeep_interval(mut self, every: Duration) -> Self {
        self.upkeep_interval = every;
        self
    }

    /// Time allowed to receive a request head (default 5 s).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Connections served at once (default 16, at least 1); further ones
    /// wait in the listen backlog.
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Binds the listener and spawns the server and upkeep tasks on the
    /// current tokio runtime.
    ///
    /// # Errors
    /// [`Error::Bind`] when the address cannot be bound.
    pub async fn spawn(self) -> Result<Exporter, Error> {
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: self.addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: self.addr,
            source,
        })?;
        let upkeep = (!self.upkeep_interval.is_zero()).then(|| {
            let handle = self.handle.clone();
            let every = self.upkeep_interval;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let _ = handle.run_upkeep();
                }
            })
        });
        let server = {
            let cfg = Arc::new(Serve {
                handle: self.handle,
                path: self.path,
                timeout: self.request_timeout,
            });
            let permits = Arc::new(Semaphore::new(self.max_connections));
            tokio::spawn(async move {
                loop {
                    let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                        return;
                    };
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            let cfg = Arc::clone(&cfg);
                            tokio::spawn(async move {
                                if let Err(e) = cfg.connection(stream).await {
                                    tracing::debug!(error = %e, "metrics scrape connection failed");
                                }
                                drop(permit);
                            });
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "metrics exporter accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        };
        Ok(Exporter {
            local_addr,
            server,
            upkeep,
        })
    }
}

#[derive(Debug)]
struct Serve {
    handle: MetricsHandle,
    path: String,
    timeout: Duration,
}

impl Serve {
    async fn connection(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(1024);
        let head = tokio::time::timeout(self.timeout, async {
            let mut chunk = [0u8; 1024];
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return Ok(Some(end));
                }
                if buf.len() >= MAX_HEAD {
                    return Ok(None);
                }
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed before the request head ended",
                    ));
                }
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            }
        })
        .await;
        let response = match head {
            Err(_) => respond(
                408,
                "Request Timeout",
                "text/plain",
                b"request timeout\n",
                true,
            ),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(None)) => respond(
                431,
                "Request Header Fields Too Large",
                "text/plain",
                b"request head too large\n",
                true,
            ),
            Ok(Ok(Some(end))) => self.answer(buf.get(..end).unwrap_or_default()),
        };
        stream.write_all(&response).await?;
        stream.shutdown().await
    }

    fn answer(&self, head: &[u8]) -> Vec<u8> {
        let Ok(head) = std::str::from_utf8(head) else {
            return respond(
                400,
                "Bad Request",
                "text/plain",
                b"request head is not utf-8\n",
                true,
            );
        };
        let mut parts = head.lines().next().unwrap_or_default().split(' ');
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return respond(
                400,
                "Bad Request",
                "text/plain",
                b"malformed request line\n",
                true,
            );
        };
        if !version.starts_with("HTTP/1.") {
            return respond(
                505,
                "HTTP Version Not Supported",
                "text/plain",
                b"HTTP/1.x only\n",
                true,
            );
        }
        let path = target.split('?').next().unwrap_or_default();
        if path != self.path {
            return respond(404, "Not Found", "text/plain", b"not found\n", true);
        }
        match method {
            "GET" => respond(
                200,
                "OK",
                CONTENT_TYPE,
                self.handle.render().as_bytes(),
                true,
            ),
            "HEAD" => respond(
                200,
                "OK",
                CONTENT_TYPE,
                self.handle.render().as_bytes(),
                false,
            ),
            _ => {
                let mut r = respond(405, "Method Not Allowed", "text/plain", b"use GET\n", true);
                let at = r.windows(2).position(|w| w == b"\r\n").unwrap_or(0) + 2;
                r.splice(at..at, b"Allow: GET, HEAD\r\n".iter().copied());
                r
            }
        }
    }
}

fn respond(code: u16, reason: &str, content_type: &str, body: &[u8], with_body: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        r.extend_from_slice(body);
    }
    r
}

/// A running exporter: the `/metrics` server and the upkeep task. Dropping
/// it (or [`shutdown`](Self::shutdown)) stops both.
#[derive(Debug)]
pub struct Exporter {
    local_addr: SocketAddr,
    server: JoinHandle<()>,
    upkeep: Option<JoinHandle<()>>,
}

// === impl Exporter ===

impl Exporter {
    /// A builder serving `handle`.
    pub fn builder(handle: MetricsHandle) -> ExporterBuilder {
        ExporterBuilder {
            handle,
            addr: SocketAddr::from(([127, 0, 0, 1], 9000)),
            path: "/metrics".into(),
            upkeep_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            max_connections: 16,
        }
    }

    /// The address actually bound (useful with port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and upkeep.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(u) = &self.upkeep {
            u.abort();
        }
    }
}
