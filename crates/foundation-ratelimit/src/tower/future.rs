//! [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use foundation_core::BoxError;
use foundation_core::error::into_box_error;
use pin_project_lite::pin_project;

use super::{RateLimitError, Reconcile};
use crate::error::AcquireError;
use crate::permit::Permit;

type Acquire = Pin<Box<dyn Future<Output = Result<Permit, AcquireError>> + Send>>;
type Call<F> = Box<dyn FnOnce() -> F + Send>;

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Acquiring { acquire: Acquire },
        Calling { #[pin] fut: F },
        Done,
    }
}

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit): waits for a
    /// permit, calls the inner service, reconciles, then releases the permit.
    /// Dropping it while waiting leaves no reservation.
    pub struct ResponseFuture<F, H> {
        #[pin]
        state: State<F>,
        call: Option<Call<F>>,
        permit: Option<Permit>,
        reconcile: H,
    }
}

impl<F, H> ResponseFuture<F, H> {
    pub(super) fn new(acquire: Acquire, call: Call<F>, reconcile: H) -> Self {
        Self {
            state: State::Acquiring { acquire },
            call: Some(call),
            permit: None,
            reconcile,
        }
    }
}

impl<F, H, T, E> Future for ResponseFuture<F, H>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    H: Reconcile<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Acquiring { acquire } => {
                    let permit = match ready!(acquire.as_mut().poll(cx)) {
                        Ok(p) => p,
                        Err(e) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(into_box_error(RateLimitError(e))));
                        }
                    };
                    *this.permit = Some(permit);
                    let Some(call) = this.call.take() else {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(
                            "response future polled after its call was taken".into()
                        ));
                    };
                    this.state.set(State::Calling { fut: call() });
                }
                StateProj::Calling { fut } => {
                    let out = ready!(fut.poll(cx));
                    this.state.set(State::Done);
                    let mut permit = this.permit.take();
                    return Poll::Ready(match out {
                        Ok(resp) => {
                            if let Some(p) = permit.as_mut() {
                                this.reconcile.reconcile(&resp, p);
                            }
                            Ok(resp)
                        }
                        Err(e) => Err(e.into()),
                    });
                }
                StateProj::Done => {
                    return Poll::Ready(Err("response future polled after completion".into()));
                }
            }
        }
    }
}

impl<F, H> fmt::Debug for ResponseFuture<F, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Acquiring { .. } => "acquiring",
            State::Calling { .. } => "calling",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("permit", &self.permit)
            .finish()
    }
}
