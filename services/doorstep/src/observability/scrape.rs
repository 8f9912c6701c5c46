//! The Prometheus scrape endpoint, `GET /metrics`, on a port of its own.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tokio::net::TcpListener;

use super::gauges::GaugeSampler;

/// The content type of Prometheus' text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A bound scrape endpoint, served by [`MetricsEndpoint::serve`].
pub struct MetricsEndpoint {
    listener: TcpListener,
    address: SocketAddr,
}

impl MetricsEndpoint {
    /// Serves on a listener bound at start (see `ports`).
    pub fn on(listener: TcpListener) -> std::io::Result<Self> {
        let address = listener.local_addr()?;
        Ok(Self { listener, address })
    }

    /// Where it listens (the real port when the settings asked for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until the task is aborted. Each scrape samples the gauges first, so what it reads
    /// is current.
    pub async fn serve(self, gauges: Arc<GaugeSampler>) {
        let app = axum::Router::new()
            .route("/metrics", axum::routing::get(metrics))
            .with_state(gauges);
        if let Err(error) = axum::serve(self.listener, app).await {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    }
}

async fn metrics(State(gauges): State<Arc<GaugeSampler>>) -> impl IntoResponse {
    gauges.refresh().await;
    match doorstep_telemetry::prometheus_text() {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, TEXT_FORMAT)], text).into_response(),
        Err(error) => {
            tracing::error!(error = %error, "cannot encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
