//! Running the real `doorstep` binary from a test, configured only through the environment as an
//! operator would: start it on port 0, read the port it logs, and stop it gracefully (SIGTERM)
//! or kill it (SIGKILL). The workspace forbids unsafe code, so signals go through `kill(1)` and
//! `Child::kill`, not libc.

// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use doorstep_api::v1;
use doorstep_api::v1::complaint_service_client::ComplaintServiceClient;
use doorstep_api::v1::contractor_service_client::ContractorServiceClient;
use doorstep_server::auth::client::{AuthenticatedChannel, CallerCredential};
use doorstep_server::auth::jwt::{TokenClaims, issue_hs256};
use doorstep_server::settings::TEST_JWT_SECRET;
use tonic::transport::Endpoint;

/// Lines of the binary's stderr kept to explain a failure.
const STDERR_TAIL_LINES: usize = 200;
/// How long the binary may take to start listening, on a busy machine.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take.
const STOP_LIMIT: Duration = Duration::from_secs(20);
/// Longest any one call may take; a call still running then has hung.
const CALL_LIMIT: Duration = Duration::from_secs(30);
/// The largest page `ListComplaints` serves.
const LIST_PAGE_SIZE: u32 = 500;
/// `ListComplaints` waits at most 10 s for `min_position`; after a crash or a long soak run may take the
/// rebuilt read model longer than that to replay, so the wait is asked for this many times.
const READ_MODEL_WAITS: usize = 12;

/// A `doorstep serve` process. Dropping it kills the process, so a failing test leaves none
/// behind.
pub struct RunningBinary {
    pub child: Child,
    pub port: u16,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The API key file of a test server on `database_url`: beside a SQLite file, or in the
/// temporary directory for a PostgreSQL database (named after the database, which is unique).
fn api_keys_file(database_url: &str) -> std::path::PathBuf {
    match database_url.strip_prefix("sqlite://") {
        Some(path) => std::path::Path::new(path).with_file_name("api-keys.json"),
        None => std::env::temp_dir().join(format!(
            "doorstep-test-api-keys-{}.json",
            database_url.rsplit('/').next().unwrap_or("db")
        )),
    }
}

/// Every role but `contractor`, as a bearer token signed with the secret [`doorstep`] gives the
/// binary.
pub fn staff_credential() -> CallerCredential {
    CallerCredential::bearer(&staff_token()).expect("a sendable token")
}

/// The token of [`staff_credential`], for the command line's `--token`.
pub fn staff_token() -> String {
    let claims = TokenClaims::new(
        "test-staff",
        &["intake", "officer", "manager", "admin", "auditor"],
        Duration::from_secs(3_600),
    );
    issue_hs256(TEST_JWT_SECRET.as_bytes(), &claims).expect("a token is signed")
}

/// The binary, set up to use `database_url`, port 0, the test JWT secret, no rate limit and
/// nothing from the working directory.
pub fn doorstep(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_doorstep"));
    command
        .env("DOORSTEP__SERVER__PORT", "0")
        .env("DOORSTEP__DATABASE__URL", database_url)
        // These tests log back-dated complaints and count their events; the notifier, on the
        // machine's clock, would escalate them. Tests of the notifier pass `--role`.
        .env("DOORSTEP__SERVER__ROLE", "api")
        .env("DOORSTEP__AUTH__JWT_HS256_SECRET", TEST_JWT_SECRET)
        .env("DOORSTEP__AUTH__API_KEYS_FILE", api_keys_file(database_url))
        // These tests drive one principal as hard as the binary goes (the crash test); the rate
        // limit has its own test.
        .env("DOORSTEP__LIMITS__REQUESTS_PER_SECOND", "0")
        .env("RUST_LOG", "info")
        // Test binaries run side by side: the metrics endpoint's fixed default port would clash.
        .env("DOORSTEP__METRICS__PORT", "0")
        // And the console's.
        .env("DOORSTEP__CONSOLE__PORT", "0")
        .env_remove("DOORSTEP_CONFIG");
    if database_url.starts_with("postgres") {
        // On a shared database the operator provides the master key; a test one will do.
        command.env(
            "DOORSTEP__PRIVACY__MASTER_KEY",
            "ZG9vcnN0ZXAgdGVzdHMgc2hhcmUgdGhpcyBrZXkgISE=",
        );
    }
    command
}

/// Starts `doorstep serve` and reads the port it logs. Panics with the end of its stderr when it
/// exits or stays silent instead.
pub fn serve(database_url: &str) -> RunningBinary {
    serve_with(database_url, &[])
}

/// As [`serve`], with more arguments after `serve` (e.g. `--role notifier`).
pub fn serve_with(database_url: &str, arguments: &[&str]) -> RunningBinary {
    let mut command = doorstep(database_url);
    command.arg("serve").args(arguments);
    spawn(command)
}

/// Runs `command`, a `doorstep serve` set up by the caller, and reads the port it logs (as text,
/// `port=…`, or as JSON, `"port":…`). Panics with the end of its stderr when it exits or stays
/// silent instead.
pub fn spawn(mut command: Command) -> RunningBinary {
    let mut child = command
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)));
    let (port_found, port_received) = mpsc::channel();
    let tail = Arc::clone(&stderr_tail);
    let echo = std::env::var_os("TEST_LOG").is_some();
    // The thread reads until the process exits: a pipe nobody drains would stall its logging.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if echo {
                eprintln!("doorstep: {line}");
            }
            if let Some(port) = logged_port(&line) {
                let _ = port_found.send(port);
            }
            let mut tail = tail
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });
    let mut running = RunningBinary {
        child,
        port: 0,
        stderr_tail,
    };
    match port_received.recv_timeout(STARTUP_LIMIT) {
        Ok(port) => running.port = port,
        Err(_) => {
            let exit = running.child.try_wait().ok().flatten();
            panic!(
                "the binary did not log the port it listens on (exit: {exit:?}); its stderr ended:\n{}",
                running.stderr_tail()
            );
        }
    }
    running
}

/// The gRPC port in the server's "listening" log line, text or JSON (other lines may name other
/// ports, e.g. the metrics endpoint's).
fn logged_port(line: &str) -> Option<u16> {
    if !line.contains("doorstep is listening") {
        return None;
    }
    let text = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("port="));
    let json = line.split_once("\"port\":").map(|(_, rest)| rest);
    let digits = text.or(json)?;
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

impl RunningBinary {
    /// The last lines the process wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tail.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Sends SIGKILL (which is what `Child::kill` sends on Unix) and waits for the process to
    /// be gone.
    pub fn kill_now(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL is delivered");
        self.child
            .wait()
            .expect("the killed child can be waited for")
    }

    /// Sends SIGTERM and waits for the process to exit. Panics if it is still running after
    /// [`STOP_LIMIT`].
    pub async fn stop_gracefully(&mut self) -> ExitStatus {
        let terminated = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(terminated.success(), "kill -TERM failed");
        let started = std::time::Instant::now();
        while started.elapsed() < STOP_LIMIT {
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the binary did not stop within {STOP_LIMIT:?} of SIGTERM; its stderr ended:\n{}",
            self.stderr_tail()
        );
    }
}

/// A channel to a local port. The binary binds before it logs its port, so the connection is
/// accepted at once.
pub async fn channel(port: u16) -> AuthenticatedChannel {
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("a valid endpoint")
        .timeout(CALL_LIMIT)
        .connect()
        .await
        .expect("the binary accepts connections");
    staff_credential().attach(channel)
}

pub async fn client(port: u16) -> ComplaintServiceClient<AuthenticatedChannel> {
    ComplaintServiceClient::new(channel(port).await)
}

/// Registers a contractor, so that complaints may name it. The request id follows from the
/// contractor id, so registering again is an idempotent retry.
pub async fn register_contractor(port: u16, contractor_id: &str) -> v1::RegisterContractorResponse {
    ContractorServiceClient::new(channel(port).await)
        .register_contractor(v1::RegisterContractorRequest {
            contractor_id: contractor_id.to_owned(),
            profile: Some(v1::ContractorProfile {
                legal_name: format!("{contractor_id} Ltd"),
                trading_names: vec![format!("{contractor_id} Warm Homes")],
                logo_url: format!("https://example.org/logos/{contractor_id}.png"),
                public_contact_name: "Sam Site".to_owned(),
                public_phone: "0113 496 0000".to_owned(),
                contracts: vec![v1::ContractTerms {
                    reference: "RETRO-2026-01".to_owned(),
                    standards: (1..=9).collect(),
                    ..v1::ContractTerms::default()
                }],
            }),
            request_id: format!("register-{contractor_id}"),
        })
        .await
        .expect("the contractor is registered")
        .into_inner()
}

/// A short valid complaint from resident `reference` (`name`) about a gate left open by
/// acme-retrofit, logged by phone.
pub fn small_complaint(
    idempotency_key: &str,
    reference: &str,
    name: &str,
) -> v1::LogComplaintRequest {
    v1::LogComplaintRequest {
        idempotency_key: idempotency_key.to_owned(),
        channel: v1::Channel::Phone as i32,
        source_system: "call-centre".to_owned(),
        resident: Some(v1::Resident {
            reference: reference.to_owned(),
            name: name.to_owned(),
            ..Default::default()
        }),
        property: Some(v1::Property {
            uprn: "10001".to_owned(),
            address: "1 Example Street".to_owned(),
        }),
        contractor_id: "acme-retrofit".to_owned(),
        standards: vec![v1::ServiceStandard::GatesSecured as i32],
        description: "Gate left open".to_owned(),
        ..Default::default()
    }
}

/// Every complaint in the read model once it has reached `head`, ordered by id.
pub async fn list_every_complaint(
    channel: &AuthenticatedChannel,
    head: u64,
) -> Vec<v1::ComplaintSummary> {
    let mut complaints = ComplaintServiceClient::new(channel.clone());
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = v1::ListComplaintsRequest {
            page_size: LIST_PAGE_SIZE,
            page_token: page_token.clone(),
            min_position: Some(head),
            ..Default::default()
        };
        let page = list_page(&mut complaints, request).await;
        assert!(
            page.read_model_position >= head,
            "the read model answered from position {} before reaching {head}",
            page.read_model_position
        );
        listed.extend(page.complaints);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    listed.sort_by(|left, right| left.complaint_id.cmp(&right.complaint_id));
    listed
}

/// One page, asking again while the read model is still catching up.
async fn list_page(
    complaints: &mut ComplaintServiceClient<AuthenticatedChannel>,
    request: v1::ListComplaintsRequest,
) -> v1::ListComplaintsResponse {
    for _ in 1..READ_MODEL_WAITS {
        match complaints.list_complaints(request.clone()).await {
            Ok(page) => return page.into_inner(),
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => continue,
            Err(status) => panic!("ListComplaints failed: {status}"),
        }
    }
    complaints
        .list_complaints(request)
        .await
        .expect("the read model reaches the head of the log")
        .into_inner()
}
