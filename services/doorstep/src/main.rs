//! `doorstep`: runs the server (the default) or applies database migrations.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use doorstep_server::{Application, Settings, startup};
use doorstep_telemetry::LogFormat;

#[derive(Parser)]
#[command(
    name = "doorstep",
    version,
    about = "Resident complaints about contractors, under the Complaint Handling Code"
)]
struct Cli {
    /// A TOML settings file; `doorstep.toml` in the working directory is read if present.
    #[arg(long, global = true, env = "DOORSTEP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Action>,
}

#[derive(Subcommand)]
enum Action {
    /// Run the gRPC server (the default).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref()).context("cannot load settings")?;
    let format = if settings.log.json {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    doorstep_telemetry::init(format, "info,sqlx=warn");

    match cli.command.unwrap_or(Action::Serve) {
        Action::Migrate => {
            startup::migrate(&settings).await?;
            tracing::info!("database is up to date");
        }
        Action::Serve => {
            let application = Application::build(settings).await?;
            application.run_until_stopped(shutdown_signal()).await?;
        }
    }
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
