//! The tower plumbing the server's two HTTP layers ([`crate::auth::guard::AuthLayer`] and
//! [`crate::observability::rpc::RpcTelemetryLayer`]) share: a layer that gives each service a
//! clone of its state, and a service that hands the inner service it polled ready, with the
//! request, to that state's [`Around::around`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;

pub type Request = http::Request<Body>;
pub type Response = http::Response<Body>;
pub type ResponseFuture<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

/// What a layer does with one call: `inner` is the service to call (or not) with `request`.
pub trait Around: Clone {
    fn around<S>(&self, inner: S, request: Request) -> ResponseFuture<S::Error>
    where
        S: tower::Service<Request, Response = Response> + Send + 'static,
        S::Future: Send + 'static;
}

/// Puts [`Wrapped`] with a clone of `A` in front of a service.
#[derive(Clone)]
pub struct AroundLayer<A> {
    around: A,
}

impl<A> AroundLayer<A> {
    pub fn new(around: A) -> Self {
        Self { around }
    }
}

impl<S, A: Clone> tower::Layer<S> for AroundLayer<A> {
    type Service = Wrapped<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        Wrapped {
            inner,
            around: self.around.clone(),
        }
    }
}

/// A service with `A` around each of its calls.
#[derive(Clone)]
pub struct Wrapped<S, A> {
    inner: S,
    around: A,
}

impl<S, A> tower::Service<Request> for Wrapped<S, A>
where
    S: tower::Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    A: Around,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service that was polled ready is the one to call; leave a fresh clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        self.around.around(inner, request)
    }
}
