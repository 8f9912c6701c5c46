//! `doorstep`: runs the server (the default) or applies database migrations.

// Intake allocates and frees many small buffers on every call across threads (HTTP/2 frames,
// JSON, SQLite rows); mimalloc spends far less time on that than glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use doorstep_server::auth::Role;
use doorstep_server::auth::api_keys;
use doorstep_server::auth::client::CallerCredential;
use doorstep_server::privacy::rotation;
use doorstep_server::report::{self, ReportFormat};
use doorstep_server::settings::Role as ServerRole;
use doorstep_server::{Application, Settings, startup};
use doorstep_telemetry::LogFormat;
use secrecy::ExposeSecret;

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
    Serve {
        /// What this process runs: the API and the notifier (`all`, the default), the API
        /// only (`api`), or the notifier only (`notifier`). Overrides `server.role`.
        #[arg(long, value_enum)]
        role: Option<ServerRole>,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Read-model maintenance.
    Projections {
        #[command(subcommand)]
        action: ProjectionsAction,
    },
    /// API keys for integrations, stored hashed in `auth.api_keys_file`.
    ApiKeys {
        #[command(subcommand)]
        action: ApiKeysAction,
    },
    /// The master key that wraps residents' data keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Keys for trying Doorstep (intake, officer, manager) on the embedded default, made once
    /// and kept beside the key store; prints the `export` lines that put them in your shell:
    /// `eval "$(doorstep quickstart)"`.
    Quickstart,
    /// Performance reports from a running server.
    Report {
        /// The server to ask.
        #[arg(
            long,
            global = true,
            default_value = "http://127.0.0.1:50051",
            env = "DOORSTEP_SERVER"
        )]
        server: String,
        #[arg(long, global = true, value_enum, default_value = "table")]
        format: ReportFormat,
        /// An API key with the manager role.
        #[arg(long, global = true, env = "DOORSTEP_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// A JWT with the manager role (instead of an API key).
        #[arg(long, global = true, env = "DOORSTEP_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// For an https:// server: the CA certificate (PEM) its certificate chains to.
        #[arg(long, global = true, env = "DOORSTEP_CA_FILE")]
        ca_file: Option<PathBuf>,
        #[command(subcommand)]
        report: ReportKind,
    },
}

#[derive(Subcommand)]
enum ProjectionsAction {
    /// Drop every read model and rebuild it from the event log. Refuses while a server runs on
    /// this database (servers register themselves in it), naming the server.
    Rebuild {
        /// Rebuild although a server is registered as running (one that crashed less than 30 s
        /// ago, say). A server that is really running keeps its read models wrong until it is
        /// restarted.
        #[arg(long)]
        force: bool,
        /// Rebuild beside the running servers: build the next generation of the read models
        /// while they serve, switch them all to it, then drop the old one. A rebuild that stopped
        /// half-way is resumed from where it got to.
        #[arg(long, conflicts_with = "force")]
        online: bool,
        /// With --online: discard a generation a stopped rebuild left half-built and start again
        /// from position 0.
        #[arg(long, requires = "online")]
        restart: bool,
    },
}

#[derive(Subcommand)]
enum ApiKeysAction {
    /// Create a key and print it once: it is stored only as a hash.
    Create {
        /// intake, officer, manager, contractor, admin or auditor; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Who the key is for; recorded as the actor (`api-key:<name>`) of what it does.
        #[arg(long)]
        name: String,
        /// The contractor a contractor key is bound to.
        #[arg(long)]
        contractor: Option<String>,
    },
    /// List keys (ids, names, roles; never secrets).
    List,
    /// Revoke a key by id; running servers stop accepting it at once.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Re-wrap every resident key under a new master key generation, in one transaction, so that
    /// the old generation can be destroyed: with it goes every copy (backups, PostgreSQL's dead
    /// rows and WAL archives) of the keys of residents forgotten before. With key files, the new
    /// generation is written beside the first (`master.key.2`, …); with privacy.master_keys, add
    /// the new generation there first. Refuses while any server runs on the database.
    RotateMaster {
        /// Overwrite and delete the retired key files afterwards (key files only). Without it,
        /// the files to destroy are listed.
        #[arg(long)]
        destroy_old: bool,
    },
}

#[derive(Subcommand)]
enum ReportKind {
    /// Every contractor against the programme average, with funnel-plot status and rank.
    Contractors {
        /// First month, YYYY-MM.
        #[arg(long)]
        from: String,
        /// Last month, YYYY-MM (included).
        #[arg(long)]
        to: String,
        /// Contractors with fewer visits are shown but not ranked.
        #[arg(long, default_value_t = 100)]
        min_visits: u64,
    },
    /// One contractor in detail: rates per standard, handling times, equality audit.
    Contractor {
        contractor_id: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
    /// Complaint handling grouped by who leads resident liaison (in-house or the contractor).
    Liaison {
        /// First month, YYYY-MM.
        #[arg(long)]
        from: String,
        /// Last month, YYYY-MM (included).
        #[arg(long)]
        to: String,
    },
    /// The regulator's CH01 and CH02 for a reporting year (1 April to 31 March).
    Handling {
        /// The year the reporting year starts in: 2026 is April 2026 to March 2027.
        #[arg(long)]
        year: u32,
        /// Homes owned, the denominator of CH01.
        #[arg(long)]
        homes: u64,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // What went wrong, for the person at the terminal: each cause once, never a stack
            // trace (a backtrace is a developer's tool; `RUST_BACKTRACE` is for panics).
            eprintln!("error: {}", said_once(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each said once: a cause whose words the line already
/// holds (a wrapper that repeats its source's message, or the same source twice) is left out.
fn said_once(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let said = cause.to_string();
        if said.is_empty() || line.contains(&said) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&said);
    }
    line
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Action::Report {
        server,
        format,
        api_key,
        token,
        ca_file,
        report,
    }) = &cli.command
    {
        // Reports talk to a server; they need no settings or database of their own.
        let server = report_server(server, api_key.as_deref(), token.as_deref(), ca_file)?;
        return run_report(&server, report, *format).await;
    }
    let mut settings = Settings::load(cli.config.as_deref()).context("cannot load settings")?;
    if let Some(Action::Serve { role: Some(role) }) = &cli.command {
        settings.server.role = *role;
    }
    let format = if settings.log.json {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    doorstep_telemetry::init(format, doorstep_telemetry::SERVER_LOG_FILTER);
    // Whichever command runs first on a new installation creates the data directory, 0700.
    startup::create_data_directories(&settings)?;

    match cli.command.unwrap_or(Action::Serve { role: None }) {
        Action::Report { .. } => {}
        Action::ApiKeys { action } => api_keys_command(&settings, action)?,
        Action::Quickstart => quickstart(&settings)?,
        Action::Projections {
            action:
                ProjectionsAction::Rebuild {
                    online: true,
                    restart,
                    ..
                },
        } => rebuild_online(&settings, restart).await?,
        Action::Projections {
            action: ProjectionsAction::Rebuild { force, .. },
        } => {
            if force {
                tracing::warn!("--force: rebuilding whether or not a server is running");
            } else {
                startup::ensure_no_server_running(&settings).await?;
            }
            rebuild(&settings).await?
        }
        Action::Keys {
            action: KeysAction::RotateMaster { destroy_old },
        } => rotate_master(&settings, destroy_old).await?,
        Action::Migrate => {
            startup::migrate(&settings).await?;
            tracing::info!("database is up to date");
        }
        Action::Serve { .. } => {
            let application = Application::build(settings).await?;
            let served = application.run_until_stopped(shutdown_signal()).await;
            // The last spans and metrics go out before the process ends.
            doorstep_telemetry::shutdown();
            served?;
        }
    }
    Ok(())
}

/// The server a report asks, with the manager's credential.
fn report_server(
    address: &str,
    api_key: Option<&str>,
    token: Option<&str>,
    ca_file: &Option<PathBuf>,
) -> anyhow::Result<report::ReportServer> {
    let credential = match (api_key, token) {
        (Some(key), _) => CallerCredential::api_key(key)?,
        (None, Some(token)) => CallerCredential::bearer(token)?,
        (None, None) => anyhow::bail!(
            "reports need a manager's credential: --api-key (DOORSTEP_API_KEY) or --token \
             (DOORSTEP_TOKEN)"
        ),
    };
    let ca_certificate = ca_file
        .as_ref()
        .map(|path| std::fs::read(path).with_context(|| format!("cannot read {}", path.display())))
        .transpose()?;
    Ok(report::ReportServer {
        address: address.to_owned(),
        credential,
        ca_certificate,
    })
}

/// Prints one report to stdout.
async fn run_report(
    server: &report::ReportServer,
    report: &ReportKind,
    format: ReportFormat,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match report {
        ReportKind::Contractors {
            from,
            to,
            min_visits,
        } => report::contractors(server, from, to, *min_visits, format, &mut out).await?,
        ReportKind::Contractor {
            contractor_id,
            from,
            to,
        } => report::contractor(server, contractor_id, from, to, format, &mut out).await?,
        ReportKind::Handling { year, homes } => {
            report::handling(server, *year, *homes, format, &mut out).await?
        }
        ReportKind::Liaison { from, to } => {
            report::liaison(server, from, to, format, &mut out).await?
        }
    }
    Ok(())
}

fn api_keys_command(settings: &Settings, action: ApiKeysAction) -> anyhow::Result<()> {
    let path = &settings.auth.api_keys_file;
    match action {
        ApiKeysAction::Create {
            roles,
            name,
            contractor,
        } => {
            let roles = roles
                .iter()
                .map(|role| {
                    Role::parse(role).with_context(|| format!("`{role}` is not a Doorstep role"))
                })
                .collect::<anyhow::Result<Vec<Role>>>()?;
            let created = api_keys::create(path, &name, &roles, contractor.as_deref())?;
            eprintln!(
                "created API key {} for {name}; it is shown once and stored only as a hash in {}",
                created.id,
                path.display()
            );
            println!("{}", created.key.expose_secret());
        }
        ApiKeysAction::List => {
            for key in api_keys::list(path)? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    key.id,
                    key.name,
                    key.roles.join(","),
                    key.contractor_id.unwrap_or_default(),
                    key.created_at.to_rfc3339()
                );
            }
        }
        ApiKeysAction::Revoke { id } => {
            api_keys::revoke(path, &id)?;
            eprintln!("revoked API key {id}");
        }
    }
    Ok(())
}

/// Makes or finds the tour's keys; says what it did on stderr and prints the exports on stdout.
fn quickstart(settings: &Settings) -> anyhow::Result<()> {
    let made = doorstep_server::quickstart::quickstart(settings)?;
    for key in &made.keys {
        let how = if key.created { "created" } else { "kept" };
        eprintln!(
            "{how} the {} key in {}",
            key.role.as_str(),
            key.path.display()
        );
    }
    if made.admin_key_file.is_none() {
        eprintln!(
            "the first admin key's file is gone; create an admin key with `doorstep api-keys \
             create --role admin --name <you>` if you need one"
        );
    }
    print!("{}", made.exports());
    Ok(())
}

/// Rotates the master key and tells the operator what is left to destroy.
async fn rotate_master(settings: &Settings, destroy_old: bool) -> anyhow::Result<()> {
    let report = rotation::rotate_master(settings, destroy_old).await?;
    let keys = if report.rewrapped == 1 {
        "1 resident key".to_owned()
    } else {
        format!("{} resident keys", report.rewrapped)
    };
    eprintln!(
        "re-wrapped {keys}: every resident key is now wrapped by master key generation {}",
        report.generation
    );
    if let Some(path) = &report.new_file {
        eprintln!(
            "the new master key is {}: back it up apart from the database",
            path.display()
        );
    }
    if report.destroyed {
        for path in &report.retired_files {
            eprintln!("destroyed the retired master key {}", path.display());
        }
        eprintln!("destroy every backup of those files too");
    } else if !report.retired_files.is_empty() {
        for path in &report.retired_files {
            eprintln!(
                "destroy the retired master key {} (and its backups)",
                path.display()
            );
        }
    } else if !report.retired.is_empty() {
        let retired: Vec<String> = report.retired.iter().map(u32::to_string).collect();
        eprintln!(
            "remove generation(s) {} from privacy.master_keys and destroy them in the secret \
             store; then start the servers",
            retired.join(", ")
        );
    }
    Ok(())
}

/// Rebuilds the read models with a progress bar on stderr.
async fn rebuild(settings: &Settings) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} events ({per_sec}, {eta} left)",
        )?
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    // The bar counts events; where the log's length is not known cheaply it grows as it goes.
    let applied = startup::rebuild_read_models(
        settings,
        |length| bar.set_length(length),
        |events, _| {
            bar.inc(events as u64);
            if bar.length() < Some(bar.position()) {
                bar.set_length(bar.position());
            }
        },
    )
    .await?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        events = applied,
        seconds,
        events_per_second = applied as f64 / seconds.max(1e-9),
        "read models rebuilt"
    );
    Ok(())
}

/// Rebuilds the read models beside the running servers, with a progress bar on stderr. The bar
/// counts log positions: on SQLite they are the events, one each; on PostgreSQL they have gaps,
/// so its rate and time left are estimated from positions (the events applied are logged at the
/// end).
async fn rebuild_online(settings: &Settings, restart: bool) -> anyhow::Result<()> {
    use doorstep_server::generations::{self, OnlineRebuild, RebuildProgress};
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left) {msg}",
        )?
        .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let options = generations::OnlineRebuildOptions {
        restart,
        ..Default::default()
    };
    let outcome = generations::rebuild_online(settings, options, |progress| match progress {
        RebuildProgress::Started {
            generation,
            resumed,
            position,
        } => {
            // On stderr whether or not it is a terminal (the bar draws only on one).
            bar.suspend(|| {
                if resumed {
                    eprintln!(
                        "resuming read-model generation {generation} from position {position}"
                    );
                } else {
                    eprintln!("building read-model generation {generation}");
                }
            });
            bar.set_position(position);
            bar.reset_eta();
        }
        RebuildProgress::Applied {
            position, target, ..
        } => {
            bar.set_length(target);
            bar.set_position(position);
        }
        RebuildProgress::Switched {
            generation,
            retired,
        } => {
            bar.set_message(format!(
                "generation {generation} is live; waiting for the servers to leave {retired}"
            ));
        }
        RebuildProgress::Finished { dropped } => {
            bar.finish_and_clear();
            match dropped {
                Some(old) => eprintln!("every server switched; generation {old} dropped"),
                None => eprintln!(
                    "some servers did not switch in time: the old generation is kept (see the log)"
                ),
            }
        }
    })
    .await?;
    bar.finish_and_clear();
    if let OnlineRebuild::Done {
        generation,
        from,
        applied,
    } = outcome
    {
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            generation,
            from,
            events = applied,
            seconds,
            events_per_second = applied as f64 / seconds.max(1e-9),
            "read models rebuilt online"
        );
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
