//! Micro-batching of single-text embedding requests.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::Error;
use crate::semantic::Embedder;

type Waiter = (String, oneshot::Sender<Result<Vec<f32>, Error>>);

#[derive(Default)]
struct Queue {
    items: Vec<Waiter>,
    generation: u64,
}

/// Wraps an [`Embedder`] so that concurrent single-text requests (one per
/// cache lookup) go out as one batch: the first request of a batch waits at
/// most `max_wait` for others, a batch of `max_batch` leaves at once.
///
/// Batches are sent from spawned tasks, so a caller that gives up does not
/// strand the others. Multi-text calls pass straight through. Needs a tokio
/// runtime.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use foundation_cache::semantic::{BatchingEmbedder, Embedder, HashingEmbedder};
/// let e = Arc::new(BatchingEmbedder::new(HashingEmbedder::new(64), 32, Duration::from_millis(2)));
/// let v = e.embed(&["hello".to_string()]).await.unwrap();
/// assert_eq!(v[0].len(), 64);
/// # }
/// ```
pub struct BatchingEmbedder<E> {
    inner: Arc<E>,
    max_batch: usize,
    max_wait: Duration,
    queue: Arc<Mutex<Queue>>,
}

impl<E: fmt::Debug> fmt::Debug for BatchingEmbedder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchingEmbedder")
            .field("inner", &self.inner)
            .field("max_batch", &self.max_batch)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

// === impl BatchingEmbedder ===

impl<E: Embedder> BatchingEmbedder<E> {
    /// Batches of at most `max_batch` texts (at least 1), each waiting at
    /// most `max_wait` for company.
    pub fn new(inner: E, max_batch: usize, max_wait: Duration) -> Self {
        Self {
            inner: Arc::new(inner),
            max_batch: max_batch.max(1),
            max_wait,
            queue: Arc::default(),
        }
    }
}

async fn flush<E: Embedder>(inner: Arc<E>, items: Vec<Waiter>) {
    let texts: Vec<String> = items.iter().map(|(t, _)| t.clone()).collect();
    match inner.embed(&texts).await {
        Ok(vs) if vs.len() == items.len() => {
            for ((_, tx), v) in items.into_iter().zip(vs) {
                let _ = tx.send(Ok(v));
            }
        }
        Ok(vs) => {
            let e = Error::Embed(format!(
                "expected {} embeddings, got {}",
                items.len(),
                vs.len()
            ));
            for (_, tx) in items {
                let _ = tx.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for (_, tx) in items {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}

impl<E: Embedder> Embedder for BatchingEmbedder<E> {
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, Error>> {
        let [text] = texts else {
            return self.inner.embed(texts);
        };
        async move {
            let (tx, rx) = oneshot::channel();
            enum Next {
                Now(Vec<Waiter>),
                After(u64),
                Nothing,
            }
            let next = {
                let mut q = self.queue.lock();
                q.items.push((text.clone(), tx));
                if q.items.len() >= self.max_batch {
                    q.generation += 1;
                    Next::Now(std::mem::take(&mut q.items))
                } else if q.items.len() == 1 {
                    Next::After(q.generation)
                } else {
                    Next::Nothing
                }
            };
            match next {
                Next::Now(items) => {
                    tokio::spawn(flush(self.inner.clone(), items));
                }
                Next::After(generation) => {
                    let (inner, queue, wait) =
                        (self.inner.clone(), self.queue.clone(), self.max_wait);
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        let items = {
                            let mut q = queue.lock();
                            if q.generation == generation {
                                q.generation += 1;
                                std::mem::take(&mut q.items)
                            } else {
                                Vec::new()
                            }
                        };
                        if !items.is_empty() {
                            flush(inner, items).await;
                        }
                    });
                }
                Next::Nothing => {}
            }
            let v = rx
                .await
                .map_err(|_| Error::Embed("embedding batch was dropped".into()))??;
            Ok(vec![v])
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semantic::HashingEmbedder;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct Counting {
        inner: HashingEmbedder,
        calls: AtomicUsize,
        fail: bool,
    }

    impl Embedder for Counting {
        fn dimensions(&self) -> usize {
            self.inner.dimensions()
        }
        fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, Error>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let fail = self.fail;
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if fail {
                    return Err(Error::Embed("down".into()));
                }
                Ok(texts.iter().map(|t| self.inner.embed_one(t)).collect())
            }
            .boxed()
        }
    }

    fn batching(fail: bool) -> Arc<BatchingEmbedder<Counting>> {
        Arc::new(BatchingEmbedder::new(
            Counting {
                inner: HashingEmbedder::new(32),
                calls: AtomicUsize::new(0),
                fail,
            },
            16,
            Duration::from_millis(5),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_singles_share_batches_and_get_their_own_vectors() {
        let e = batching(false);
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let e = e.clone();
                tokio::spawn(
                    async move { (i, e.embed(&[format!("text number {i}")]).await.unwrap()) },
                )
            })
            .collect();
        let reference = HashingEmbedder::new(32);
        for t in tasks {
            let (i, v) = t.await.unwrap();
            assert_eq!(v, vec![reference.embed_one(&format!("text number {i}"))]);
        }
        let calls = e.inner.calls.load(Ordering::SeqCst);
        assert!(
            calls <= 4,
            "{calls} upstream calls for 40 texts in batches of 16"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_reach_every_waiter_and_cancellation_strands_nobody() {
        let e = batching(true);
        let (a, b) = (e.clone(), e.clone());
        let (x, y) = (vec!["x".to_string()], vec!["y".to_string()]);
        let r = tokio::join!(a.embed(&x), b.embed(&y));
        assert!(r.0.is_err() && r.1.is_err());

        let e = batching(false);
        let first = tokio::spawn({
            let e = e.clone();
            async move { e.embed(&["first".into()]).await }
        });
        let second = tokio::spawn({
            let e = e.clone();
            async move { e.embed(&["second".into()]).await }
        });
        tokio::task::yield_now().await;
        first.abort();
        assert_eq!(second.await.unwrap().unwrap().len(), 1);
    }
}
