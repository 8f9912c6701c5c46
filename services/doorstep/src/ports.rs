//! Every port the server listens on, bound first: before an admin key, a master key or a
//! database is created, so that a second instance started by mistake fails at once and leaves
//! nothing behind, naming the setting to change.

use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpListener;

/// One port the settings ask for, with the setting and environment variable that choose it.
#[derive(Debug, Clone, Copy)]
pub struct PortSetting {
    /// The setting's key, `section.key`, which also names the listener in [`BoundPorts::take`].
    pub setting: &'static str,
    /// The environment variable that sets it.
    pub variable: &'static str,
    /// What the port is for, in the error's words: "cannot listen for <purpose> on …".
    pub purpose: &'static str,
    pub address: SocketAddr,
}

/// The gRPC port's setting.
pub const GRPC: &str = "server.port";
/// The Prometheus endpoint's setting.
pub const METRICS: &str = "metrics.port";
/// The web console's setting.
pub const CONSOLE: &str = "console.port";

/// Every port these settings ask this process to listen on. A new listener is one line here,
/// then a [`BoundPorts::take`] where it is served.
pub fn wanted(settings: &crate::Settings) -> Vec<PortSetting> {
    let port = |setting, variable, purpose, host: IpAddr, port| PortSetting {
        setting,
        variable,
        purpose,
        address: SocketAddr::new(host, port),
    };
    let mut ports = vec![port(
        GRPC,
        "DOORSTEP__SERVER__PORT",
        "gRPC calls",
        settings.server.host,
        settings.server.port,
    )];
    if settings.metrics.enabled {
        ports.push(port(
            METRICS,
            "DOORSTEP__METRICS__PORT",
            "metrics scrapes",
            settings.metrics.host,
            settings.metrics.port,
        ));
    }
    if settings.console.enabled && settings.server.role.serves_api() {
        ports.push(port(
            CONSOLE,
            "DOORSTEP__CONSOLE__PORT",
            "the web console",
            settings.console.host,
            settings.console.port,
        ));
    }
    ports
}

/// A port that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen for {} on {}: {}. Is another Doorstep running? Choose another port with the \
     setting {} (or the environment variable {})",
    .port.purpose, .port.address, .source, .port.setting, .port.variable
)]
pub struct PortError {
    pub port: PortSetting,
    #[source]
    pub source: std::io::Error,
}

/// The listeners, bound, until each is taken by what serves it.
pub struct BoundPorts {
    listeners: Vec<(&'static str, TcpListener)>,
}

impl BoundPorts {
    /// Binds every port in `ports`, or fails at the first one that cannot be bound.
    pub async fn bind(ports: Vec<PortSetting>) -> Result<Self, PortError> {
        let mut listeners = Vec::with_capacity(ports.len());
        for port in ports {
            let listener = TcpListener::bind(port.address)
                .await
                .map_err(|source| PortError { port, source })?;
            listeners.push((port.setting, listener));
        }
        Ok(Self { listeners })
    }

    /// The listener bound for `setting`, once; `None` if it was not asked for (or already taken).
    pub fn take(&mut self, setting: &str) -> Option<TcpListener> {
        let index = self
            .listeners
            .iter()
            .position(|(name, _)| *name == setting)?;
        Some(self.listeners.swap_remove(index).1)
    }
}
