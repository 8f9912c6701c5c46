//! A webhook receiver for tests: a real HTTP server on 127.0.0.1 that checks every request's
//! `Doorstep-Signature` the way the README tells receivers to, and records what it accepted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SECRET: &str = "whsec_doorstep_test_secret";

/// One webhook call as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub delivery_id: String,
    pub body: serde_json::Value,
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub accepted: Arc<Mutex<Vec<Received>>>,
    pub refused_signatures: Arc<Mutex<usize>>,
    /// Answers 503 while true, as a receiver in trouble does.
    pub failing: Arc<Mutex<bool>>,
}

/// What a receiver does with `Doorstep-Signature: t=<seconds>,v1=<hex>`: recompute HMAC-SHA256
/// over `<t>.<body>` with the shared secret, and refuse a stale timestamp.
fn signature_is_valid(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(header) = headers
        .get("doorstep-signature")
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let parts: BTreeMap<&str, &str> = header
        .split(',')
        .filter_map(|part| part.split_once('='))
        .collect();
    let (Some(timestamp), Some(signature)) = (parts.get("t"), parts.get("v1")) else {
        return false;
    };
    let Ok(seconds) = timestamp.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - seconds).abs() > 300 {
        return false;
    }
    let Ok(expected) = hex::decode(signature) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if !signature_is_valid(&headers, &body) {
        *receiver.refused_signatures.lock().expect("lock") += 1;
        return StatusCode::UNAUTHORIZED;
    }
    if *receiver.failing.lock().expect("lock") {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let delivery_id = headers
        .get("doorstep-delivery")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    receiver
        .accepted
        .lock()
        .expect("lock")
        .push(Received { delivery_id, body });
    StatusCode::NO_CONTENT
}

/// Serves the receiver on `address` until the returned handle is aborted.
pub async fn serve_receiver(
    receiver: Receiver,
    address: SocketAddr,
) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .expect("the receiver binds");
    let app = axum::Router::new()
        .route("/hooks/doorstep", axum::routing::post(receive))
        .with_state(receiver);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// A loopback address nothing listens on yet.
pub fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address")
}
