//! Crash safety: the real `doorstep` binary is killed with SIGKILL while clients are logging
//! complaints, again and again on the same database. Afterwards nothing acknowledged is lost,
//! nothing is written twice, no event is half-written and the read model equals one rebuilt from
//! the log.
//!
//! Each cycle starts `doorstep serve` on the same database, registers the contractor the
//! complaints name (the same request every time, so from the second cycle on it is a retry), and
//! lets eight clients log complaints with unique idempotency keys (`crash-{cycle}-{client}-{n}`).
//! Every call an earlier crash cut off is first retried, with the same key and the same content,
//! as the contract tells callers to. After a random 50–400 ms the process gets SIGKILL. When every
//! cycle is done the binary starts once more and the test checks, through gRPC:
//!
//! 1. every key is there exactly once: a retry of an acknowledged key answers `duplicate = true`
//!    with the complaint and position first acknowledged, a retry of a cut-off key succeeds;
//! 2. the log (`EventService.SubscribeAll` up to `caught_up`) holds exactly one well-formed
//!    `ComplaintReceived` per key, each alone in its stream at version 1, with increasing
//!    positions (gap-free on SQLite) and distinct event ids, and the contractor is registered
//!    once;
//! 3. `ListComplaints`, once the read model has reached the log's head, shows exactly the
//!    complaints the log holds, and shows the same list again after the server is stopped, the
//!    read models are emptied (`ProjectionRunner::reset`, on a copy of the SQLite file or in the
//!    PostgreSQL database) and a new server has replayed the log from position 0.
//!
//! Both backends run: SQLite in a temporary file, PostgreSQL in a fresh database from
//! `doorstep-test-postgres` (skipped with a loud notice when no PostgreSQL is available, unless
//! `DOORSTEP_REQUIRE_POSTGRES=1`).
//!
//! Randomness only decides when each kill lands; what is asserted is the same in every run. The
//! seed is printed at the start (run with `--nocapture` to see it on success); to repeat a
//! failure's kill times, set `DOORSTEP_CRASH_SEED=<seed>`.
//!
//! A normal run does 3 cycles per backend and takes a few seconds. A soak run does more:
//!
//! ```sh
//! DOORSTEP_CRASH_CYCLES=50 cargo test -p doorstep-server --test crash_safety -- --nocapture
//! ```
//!
//! SIGKILL ends the process, not the machine: what the process handed to the kernel survives
//! it. So this proves that appends are atomic and retries idempotent across crashes, not that
//! commits are fsynced (that is `synchronous=FULL`'s job, and testing it needs a power cut).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::RangeInclusive;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use doorstep_api::v1;
use doorstep_api::v1::complaint_service_client::ComplaintServiceClient;
use doorstep_api::v1::event_service_client::EventServiceClient;
use doorstep_api::v1::subscribe_all_response::Message;
use doorstep_projections::{ProjectionRunner, ReadModelDatabase};
use doorstep_server::auth::client::AuthenticatedChannel as Channel;
use doorstep_store::{
    EventStore, PostgresEventStore, PostgresSettings, SqliteEventStore, SqliteSettings,
};
use tonic::Code;
use tonic::transport::Endpoint;

use support::{RunningBinary, channel, list_every_complaint, serve};

/// Crash cycles in a normal test run; `DOORSTEP_CRASH_CYCLES` overrides it.
const DEFAULT_CYCLES: usize = 3;
/// Clients logging complaints at the same time.
const CLIENTS: usize = 8;
/// How long after the start of a cycle's load the process is killed.
const KILL_AFTER_MILLIS: RangeInclusive<u64> = 50..=400;
/// Shown at most, when many things are wrong at once.
const SHOWN_PROBLEMS: usize = 20;
/// The contractor every complaint is about; `LogComplaint` refuses unregistered ones.
const CONTRACTOR_ID: &str = "acme-retrofit";
/// When every complaint was received: 2026-03-02T09:00:00Z. Fixed, so that a retry sends the
/// very same request; in the past, so that it is never refused as a future date.
const RECEIVED_AT_SECONDS: i64 = 1_772_442_000;

#[tokio::test]
async fn sqlite_keeps_every_acknowledged_complaint_through_repeated_sigkill() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let file = directory.path().join("doorstep.db");
    survive_repeated_sigkill(CrashedDatabase {
        url: format!("sqlite://{}", file.display()),
        positions_gap_free: true,
        rebuild: Rebuild::SqliteCopy {
            file,
            directory: directory.path().join("rebuilt"),
        },
    })
    .await;
}

#[tokio::test]
async fn postgres_keeps_every_acknowledged_complaint_through_repeated_sigkill() {
    // Skipped, loudly, when no PostgreSQL can be found or started (see doorstep-test-postgres).
    let Some(database) = doorstep_test_postgres::fresh_database().await else {
        return;
    };
    survive_repeated_sigkill(CrashedDatabase {
        url: database.url().to_owned(),
        positions_gap_free: false,
        rebuild: Rebuild::InPlace,
    })
    .await;
}

/// The database the binary is crashed on.
struct CrashedDatabase {
    url: String,
    /// SQLite numbers events 1, 2, 3, … without gaps; PostgreSQL only promises increasing
    /// positions.
    positions_gap_free: bool,
    rebuild: Rebuild,
}

/// Where the read model is rebuilt from the log.
enum Rebuild {
    /// In a copy of the SQLite file (and its WAL), so the crashed file stays as the crashes
    /// left it.
    SqliteCopy { file: PathBuf, directory: PathBuf },
    /// In the PostgreSQL database itself.
    InPlace,
}

/// Crash cycles, then every check. Panics on the first broken guarantee.
async fn survive_repeated_sigkill(database: CrashedDatabase) {
    let cycles = crash_cycles();
    let seed = crash_seed();
    println!(
        "crash safety on {}: {cycles} cycles, seed {seed} (DOORSTEP_CRASH_SEED={seed} repeats \
         the kill times)",
        database.url
    );
    let started = Instant::now();
    let mut kill_times = XorShift::new(seed);
    let mut ledger = Ledger::default();
    for cycle in 0..cycles {
        let kill_after = Duration::from_millis(kill_times.in_range(KILL_AFTER_MILLIS));
        let violations = crash_cycle(&database.url, cycle, kill_after, &mut ledger).await;
        assert!(
            violations.is_empty(),
            "seed {seed}, cycle {cycle}: the server answered what it must not:\n{}",
            shown(&violations)
        );
        println!(
            "cycle {cycle}: killed after {kill_after:?}; {} keys acknowledged, {} waiting for a retry",
            ledger.acknowledged.len(),
            ledger.unacknowledged.len()
        );
    }
    verify_after_crashes(&database, &ledger).await;
    println!(
        "crash safety on {}: {cycles} cycles, {} keys, passed in {:?}",
        database.url,
        ledger.acknowledged.len() + ledger.unacknowledged.len(),
        started.elapsed()
    );
}

fn crash_cycles() -> usize {
    match std::env::var("DOORSTEP_CRASH_CYCLES") {
        Ok(text) => text
            .parse()
            .expect("DOORSTEP_CRASH_CYCLES is a number of cycles"),
        Err(_) => DEFAULT_CYCLES,
    }
}

fn crash_seed() -> u64 {
    if let Ok(text) = std::env::var("DOORSTEP_CRASH_SEED") {
        return text.parse().expect("DOORSTEP_CRASH_SEED is a u64");
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    // The low bits vary most; xorshift needs a non-zero state.
    u64::try_from(nanos % u128::from(u64::MAX))
        .unwrap_or(1)
        .max(1)
}

/// A tiny xorshift64 generator: enough to spread kill times, and repeatable from its seed.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut state = self.0;
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        self.0 = state;
        state
    }

    fn in_range(&mut self, range: RangeInclusive<u64>) -> u64 {
        range.start() + self.next() % (range.end() - range.start() + 1)
    }
}

/// What the clients were told, across every cycle.
#[derive(Default)]
struct Ledger {
    /// Keys whose `LogComplaint` returned OK, with where it said the complaint was.
    acknowledged: BTreeMap<String, Acknowledgement>,
    /// Keys sent at least once without an OK answer yet. Each is retried after the restart.
    unacknowledged: BTreeSet<String>,
    /// Keys a crash cut off at least once.
    cut_off: usize,
    /// Cut-off keys whose retry found the complaint written: the crash came between the commit
    /// and the answer.
    cut_off_but_written: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Acknowledgement {
    complaint_id: String,
    position: u64,
}

/// One `LogComplaint` call during a crash cycle.
enum Answer {
    Acknowledged {
        key: String,
        /// Whether an earlier call with this key had been cut off.
        retried: bool,
        response: v1::LogComplaintResponse,
    },
    /// The call failed the way calls fail when the server dies under them.
    CutOff { key: String },
    /// Any other error: the server refused a valid request.
    Refused { key: String, status: tonic::Status },
}

impl Ledger {
    /// Records a cycle's answers and returns every answer that breaks the contract.
    fn record(&mut self, answers: Vec<Answer>) -> Vec<String> {
        let mut violations = Vec::new();
        for answer in answers {
            match answer {
                Answer::Acknowledged {
                    key,
                    retried,
                    response,
                } => {
                    if response.duplicate && !retried {
                        violations.push(format!(
                            "{key}: the first call with this key was answered duplicate=true"
                        ));
                    }
                    if response.version != 1 {
                        violations.push(format!(
                            "{key}: a new complaint was answered with version {}",
                            response.version
                        ));
                    }
                    if retried && response.duplicate {
                        self.cut_off_but_written += 1;
                    }
                    self.unacknowledged.remove(&key);
                    let acknowledgement = Acknowledgement {
                        complaint_id: response.complaint_id,
                        position: response.position,
                    };
                    if self
                        .acknowledged
                        .insert(key.clone(), acknowledgement)
                        .is_some()
                    {
                        violations.push(format!("{key}: acknowledged twice"));
                    }
                }
                Answer::CutOff { key } => self.cut_off_once(key),
                Answer::Refused { key, status } => {
                    violations.push(format!(
                        "{key}: refused with {:?}: {}",
                        status.code(),
                        status.message()
                    ));
                    self.cut_off_once(key);
                }
            }
        }
        violations
    }

    fn cut_off_once(&mut self, key: String) {
        if self.unacknowledged.insert(key) {
            self.cut_off += 1;
        }
    }
}

/// One cycle: start the binary, load it, kill it, and record what the clients were told.
async fn crash_cycle(
    database_url: &str,
    cycle: usize,
    kill_after: Duration,
    ledger: &mut Ledger,
) -> Vec<String> {
    let mut running = serve(database_url);
    register_contractor(running.port, cycle).await;
    let cut_off_earlier: Vec<String> = ledger.unacknowledged.iter().cloned().collect();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let retries = cut_off_earlier
                .iter()
                .skip(client)
                .step_by(CLIENTS)
                .cloned()
                .collect();
            let channel = lazy_channel(running.port);
            tokio::spawn(log_until_cut_off(channel, retries, cycle, client))
        })
        .collect();
    tokio::time::sleep(kill_after).await;
    kill(&mut running, cycle);
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.expect("a client task does not panic"));
    }
    ledger.record(answers)
}

/// Registers the contractor the complaints name, before the clients start. Every cycle sends
/// the same registration again, which must be answered as a retry: a crash must not make the
/// server forget a request id.
async fn register_contractor(port: u16, cycle: usize) {
    let registered = support::register_contractor(port, CONTRACTOR_ID).await;
    assert_eq!(
        (registered.version, registered.duplicate),
        (1, cycle > 0),
        "cycle {cycle}: registering the contractor again was not answered as a retry"
    );
}

/// SIGKILL, and a check that the process was still running when it came.
fn kill(running: &mut RunningBinary, cycle: usize) {
    let exit = running.kill_now();
    assert_eq!(
        exit.signal(),
        Some(9),
        "cycle {cycle}: the server was expected to be running until SIGKILL, but it exited with \
         {exit:?}; its stderr ended:\n{}",
        running.stderr_tail()
    );
}

/// A channel that connects on first use, one HTTP/2 connection per client.
fn lazy_channel(port: u16) -> Channel {
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("a valid endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect_lazy();
    support::staff_credential().attach(channel)
}

/// Retries the keys earlier crashes cut off, then logs new complaints, until a call fails.
async fn log_until_cut_off(
    channel: Channel,
    retries: Vec<String>,
    cycle: usize,
    client: usize,
) -> Vec<Answer> {
    let mut complaints = ComplaintServiceClient::new(channel);
    let retried_keys = retries.into_iter().map(|key| (key, true));
    let new_keys = (0_u64..).map(|n| (format!("crash-{cycle}-{client}-{n}"), false));
    let mut answers = Vec::new();
    for (key, retried) in retried_keys.chain(new_keys) {
        let answer = match complaints.log_complaint(complaint(&key)).await {
            Ok(response) => Answer::Acknowledged {
                key,
                retried,
                response: response.into_inner(),
            },
            Err(status) if is_cut_off(&status) => Answer::CutOff { key },
            Err(status) => Answer::Refused { key, status },
        };
        let failed = !matches!(answer, Answer::Acknowledged { .. });
        answers.push(answer);
        if failed {
            break;
        }
    }
    answers
}

/// The codes a call gets when the server dies under it or is not there: the connection was
/// reset or refused, or the answer never came.
fn is_cut_off(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

/// A valid complaint whose content follows from its key alone, so that a retry is identical.
fn complaint(key: &str) -> v1::LogComplaintRequest {
    let received_at = prost_types::Timestamp {
        seconds: RECEIVED_AT_SECONDS,
        nanos: 0,
    };
    v1::LogComplaintRequest {
        idempotency_key: key.to_owned(),
        channel: v1::Channel::Phone as i32,
        source_system: "call-centre".to_owned(),
        resident: Some(v1::Resident {
            reference: "T-1001".to_owned(),
            name: "Ada Resident".to_owned(),
            phone: "07700 900123".to_owned(),
            email: "ada@example.org".to_owned(),
        }),
        property: Some(v1::Property {
            uprn: "100023336956".to_owned(),
            address: "1 Example Road, Leeds".to_owned(),
        }),
        contractor_id: CONTRACTOR_ID.to_owned(),
        visit_id: Some("V-2026-0001".to_owned()),
        standards: vec![v1::ServiceStandard::GatesSecured as i32],
        description: format!("The side gate was left open ({key})"),
        occurred_at: Some(received_at),
        received_at: Some(received_at),
        outcome_sought: "An apology and the gate kept shut".to_owned(),
        reasonable_adjustments: String::new(),
    }
}

/// Restarts the binary after the last crash and checks every guarantee.
async fn verify_after_crashes(database: &CrashedDatabase, ledger: &Ledger) {
    let mut running = serve(&database.url);
    let channel = channel(running.port).await;

    let retried = retry_every_key(&channel, ledger).await;
    let complaint_by_key = &retried.complaint_by_key;
    let distinct_complaints: HashSet<&String> = complaint_by_key.values().collect();
    assert_eq!(
        distinct_complaints.len(),
        complaint_by_key.len(),
        "two keys were answered with the same complaint"
    );

    let (events, caught_up) = read_whole_log(&channel).await;
    let log = LogContents::check(&events, caught_up, database.positions_gap_free);
    let keys_in_log: BTreeMap<String, String> = log
        .complaint_by_key
        .iter()
        .map(|(key, (complaint_id, _))| (key.clone(), complaint_id.clone()))
        .collect();
    assert_same(
        "(key, complaint) pairs the log holds",
        &keys_in_log.clone().into_iter().collect(),
        "(key, complaint) pairs the retries were answered with",
        &complaint_by_key.clone().into_iter().collect(),
    );
    for (key, acknowledgement) in &ledger.acknowledged {
        assert_eq!(
            log.complaint_by_key.get(key).map(|(_, position)| *position),
            Some(acknowledgement.position),
            "{key} was acknowledged at position {} but is not there in the log",
            acknowledgement.position
        );
    }

    let listed = list_every_complaint(&channel, log.head).await;
    assert_eq!(
        listed.len(),
        complaint_by_key.len(),
        "the list does not hold one complaint per key"
    );
    let listed_rows: BTreeSet<ListedRow> = listed.iter().map(ListedRow::from).collect();
    assert_same(
        "rows in the read model",
        &listed_rows,
        "rows the log implies",
        &log.rows,
    );

    let stopped = running.stop_gracefully().await;
    assert!(
        stopped.success(),
        "a graceful stop exits 0, got {stopped:?}"
    );
    drop(channel);

    let rebuilt_url = with_empty_read_models(database).await;
    let mut rebuilt = serve(&rebuilt_url);
    let rebuilt_channel = support::channel(rebuilt.port).await;
    let relisted = list_every_complaint(&rebuilt_channel, log.head).await;
    assert!(
        relisted == listed,
        "the read model rebuilt from the log differs from the one kept through the crashes \
         ({} rows rebuilt, {} before)",
        relisted.len(),
        listed.len()
    );
    let stopped = rebuilt.stop_gracefully().await;
    assert!(
        stopped.success(),
        "a graceful stop exits 0, got {stopped:?}"
    );
    println!(
        "{} keys: {} acknowledged at once, {} cut off by a crash ({} of those had been written \
         nonetheless); {} events up to position {}",
        complaint_by_key.len(),
        complaint_by_key.len() - ledger.cut_off,
        ledger.cut_off,
        ledger.cut_off_but_written + retried.cut_off_but_written,
        events.len(),
        log.head
    );
}

/// What the retries after the last crash were answered.
struct Retried {
    /// The complaint each key is answered with.
    complaint_by_key: BTreeMap<String, String>,
    /// Keys never acknowledged before whose retry found the complaint written.
    cut_off_but_written: usize,
}

/// Sends every key again, with its original content, from `CLIENTS` clients at once.
async fn retry_every_key(channel: &Channel, ledger: &Ledger) -> Retried {
    let keys: Vec<String> = ledger
        .acknowledged
        .keys()
        .chain(&ledger.unacknowledged)
        .cloned()
        .collect();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let share: Vec<String> = keys.iter().skip(client).step_by(CLIENTS).cloned().collect();
            let mut complaints = ComplaintServiceClient::new(channel.clone());
            tokio::spawn(async move {
                let mut answers = Vec::with_capacity(share.len());
                for key in share {
                    let answer = complaints.log_complaint(complaint(&key)).await;
                    answers.push((key, answer.map(tonic::Response::into_inner)));
                }
                answers
            })
        })
        .collect();

    let mut complaint_by_key = BTreeMap::new();
    let mut cut_off_but_written = 0;
    let mut problems = Vec::new();
    for client in clients {
        for (key, answer) in client.await.expect("a client task does not panic") {
            let response = match answer {
                Ok(response) => response,
                Err(status) => {
                    problems.push(format!(
                        "{key}: the retry failed with {:?}: {}",
                        status.code(),
                        status.message()
                    ));
                    continue;
                }
            };
            if let Some(acknowledged) = ledger.acknowledged.get(&key) {
                let answered = Acknowledgement {
                    complaint_id: response.complaint_id.clone(),
                    position: response.position,
                };
                if !response.duplicate || answered != *acknowledged {
                    problems.push(format!(
                        "{key}: acknowledged as {acknowledged:?}, but the retry was answered \
                         {answered:?} with duplicate={}",
                        response.duplicate
                    ));
                }
            } else if response.duplicate {
                cut_off_but_written += 1;
            }
            if response.version != 1 {
                problems.push(format!(
                    "{key}: the retry was answered with version {}",
                    response.version
                ));
            }
            complaint_by_key.insert(key, response.complaint_id);
        }
    }
    assert!(
        problems.is_empty(),
        "retries after the crashes were not answered as the contract says:\n{}",
        shown(&problems)
    );
    Retried {
        complaint_by_key,
        cut_off_but_written,
    }
}

/// Every event in the log, from `SubscribeAll` at position 0 up to its `caught_up` message, and
/// the position that message names.
async fn read_whole_log(channel: &Channel) -> (Vec<v1::RecordedEvent>, u64) {
    let mut subscription = EventServiceClient::new(channel.clone())
        .subscribe_all(v1::SubscribeAllRequest {
            from_position: 0,
            ..Default::default()
        })
        .await
        .expect("the log can be subscribed to")
        .into_inner();
    let mut events = Vec::new();
    loop {
        let message = subscription
            .message()
            .await
            .expect("the subscription delivers the log")
            .expect("the subscription stays open at least until it has caught up");
        match message.message {
            Some(Message::Event(event)) => events.push(event),
            Some(Message::CaughtUp(caught_up)) => return (events, caught_up.position),
            None => panic!("the subscription sent an empty message"),
        }
    }
}

/// A complaint as the list shows it, reduced to what the log decides.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ListedRow {
    complaint_id: String,
    status: i32,
    version: u64,
}

impl From<&v1::ComplaintSummary> for ListedRow {
    fn from(summary: &v1::ComplaintSummary) -> Self {
        Self {
            complaint_id: summary.complaint_id.clone(),
            status: summary.status,
            version: summary.version,
        }
    }
}

/// What the log holds, once checked to be well formed.
struct LogContents {
    /// The position of the last event; 0 for an empty log.
    head: u64,
    /// Each intake key, the complaint its `ComplaintReceived` opened and that event's position.
    complaint_by_key: BTreeMap<String, (String, u64)>,
    /// The list row each complaint stream implies.
    rows: BTreeSet<ListedRow>,
}

impl LogContents {
    /// Checks that the log is whole: positions increase (from 1 without gaps, when the backend
    /// promises that) and end where the subscription said it caught up, event ids are unique,
    /// every complaint stream is one `ComplaintReceived` at version 1 with a payload that names
    /// that complaint, one per key, and the only other stream is the contractor's registration.
    fn check(events: &[v1::RecordedEvent], caught_up: u64, positions_gap_free: bool) -> Self {
        let head = events.last().map_or(0, |event| event.position);
        assert_eq!(
            caught_up, head,
            "the subscription caught up at another position than its last event"
        );
        for pair in events.windows(2) {
            assert!(
                pair[0].position < pair[1].position,
                "positions do not increase: {} then {}",
                pair[0].position,
                pair[1].position
            );
        }
        if positions_gap_free {
            for (index, event) in events.iter().enumerate() {
                assert_eq!(
                    event.position,
                    index as u64 + 1,
                    "the log has a gap or does not start at position 1"
                );
            }
        }
        let mut event_ids = HashSet::new();
        for event in events {
            assert!(
                event_ids.insert(event.event_id.as_str()),
                "event id {} is in the log twice",
                event.event_id
            );
        }

        let mut streams: BTreeMap<&str, Vec<&v1::RecordedEvent>> = BTreeMap::new();
        for event in events {
            streams.entry(&event.stream_id).or_default().push(event);
        }
        let contractor_stream = format!("contractor-{CONTRACTOR_ID}");
        let registrations = streams
            .remove(contractor_stream.as_str())
            .unwrap_or_default();
        let registration_types: Vec<&str> = registrations
            .iter()
            .map(|event| event.event_type.as_str())
            .collect();
        assert_eq!(
            registration_types,
            ["ContractorRegistered"],
            "the contractor, registered again in every cycle, is not registered exactly once"
        );

        let mut complaint_by_key = BTreeMap::new();
        let mut rows = BTreeSet::new();
        for (stream_id, stream) in streams {
            let complaint_id = stream_id.strip_prefix("complaint-").unwrap_or_else(|| {
                panic!("stream {stream_id} is neither a complaint's nor the contractor's")
            });
            let [received] = stream.as_slice() else {
                panic!(
                    "stream {stream_id} holds {} events; only one complaint was logged in it",
                    stream.len()
                );
            };
            assert_eq!(
                received.version, 1,
                "{stream_id} does not start at version 1"
            );
            assert_eq!(
                received.event_type, "ComplaintReceived",
                "{stream_id} does not start with its intake"
            );
            let payload: serde_json::Value = serde_json::from_str(&received.payload_json)
                .unwrap_or_else(|error| {
                    panic!(
                        "the payload at position {} is not JSON: {error}",
                        received.position
                    )
                });
            assert_eq!(
                payload
                    .get("complaint_id")
                    .and_then(serde_json::Value::as_str),
                Some(complaint_id),
                "the intake at position {} names another complaint than its stream",
                received.position
            );
            let key = received
                .metadata
                .as_ref()
                .map(|metadata| metadata.request_id.clone())
                .filter(|key| !key.is_empty())
                .unwrap_or_else(|| {
                    panic!("the intake at position {} has no key", received.position)
                });
            if let Some((other, _)) =
                complaint_by_key.insert(key.clone(), (complaint_id.to_owned(), received.position))
            {
                panic!("key {key} opened two complaints: {other} and {complaint_id}");
            }
            rows.insert(ListedRow {
                complaint_id: complaint_id.to_owned(),
                status: v1::ComplaintStatus::AwaitingAcknowledgement as i32,
                version: received.version,
            });
        }
        Self {
            head,
            complaint_by_key,
            rows,
        }
    }
}

/// A database URL whose read models are empty, so the next server replays the log into them.
async fn with_empty_read_models(database: &CrashedDatabase) -> String {
    match &database.rebuild {
        Rebuild::SqliteCopy { file, directory } => {
            let copy = copy_sqlite_database(file, directory);
            let url = format!("sqlite://{}", copy.display());
            let store = SqliteEventStore::open(SqliteSettings::new(copy))
                .await
                .expect("the copied event log opens");
            reset_read_models(&url, Arc::new(store.clone())).await;
            store.close().await;
            url
        }
        Rebuild::InPlace => {
            let store = PostgresEventStore::open(PostgresSettings::new(database.url.clone()))
                .await
                .expect("the event log opens");
            reset_read_models(&database.url, Arc::new(store.clone())).await;
            store.close().await;
            database.url.clone()
        }
    }
}

/// Empties every read model and its checkpoint the way the projections crate defines it, so
/// that a read model added later is rebuilt too.
async fn reset_read_models(url: &str, store: Arc<dyn EventStore>) {
    let read_models = ReadModelDatabase::open(url)
        .await
        .expect("the read-model database opens");
    let calendar = Arc::new(doorstep_domain::WorkingDayCalendar::england_and_wales());
    let (runner, _) = ProjectionRunner::open(store, read_models.clone(), calendar)
        .await
        .expect("the projection runner opens");
    runner.reset().await.expect("the read models are emptied");
    read_models.close().await;
}

/// Copies a SQLite database no process has open, with its write-ahead log if one is left, and
/// returns the copy's path.
fn copy_sqlite_database(file: &Path, directory: &Path) -> PathBuf {
    std::fs::create_dir_all(directory).expect("the copy's directory is created");
    let name = file.file_name().expect("the database is a file");
    let copy = directory.join(name);
    std::fs::copy(file, &copy).expect("the database file is copied");
    let mut write_ahead_log = file.as_os_str().to_owned();
    write_ahead_log.push("-wal");
    let write_ahead_log = PathBuf::from(write_ahead_log);
    if write_ahead_log.exists() {
        let mut copied_log = copy.as_os_str().to_owned();
        copied_log.push("-wal");
        std::fs::copy(&write_ahead_log, copied_log).expect("the write-ahead log is copied");
    }
    copy
}

/// Asserts two sets are equal, showing a few of the differences when they are not.
fn assert_same<T: Ord + std::fmt::Debug>(
    left_name: &str,
    left: &BTreeSet<T>,
    right_name: &str,
    right: &BTreeSet<T>,
) {
    if left == right {
        return;
    }
    let only_left: Vec<String> = left
        .difference(right)
        .map(|item| format!("{item:?}"))
        .collect();
    let only_right: Vec<String> = right
        .difference(left)
        .map(|item| format!("{item:?}"))
        .collect();
    panic!(
        "{left_name} ({}) differ from {right_name} ({}).\nOnly in the first:\n{}\nOnly in the \
         second:\n{}",
        left.len(),
        right.len(),
        shown(&only_left),
        shown(&only_right)
    );
}

fn shown(problems: &[String]) -> String {
    let mut text = problems
        .iter()
        .take(SHOWN_PROBLEMS)
        .map(|problem| format!("  {problem}"))
        .collect::<Vec<_>>()
        .join("\n");
    if problems.len() > SHOWN_PROBLEMS {
        text.push_str(&format!(
            "\n  … and {} more",
            problems.len() - SHOWN_PROBLEMS
        ));
    }
    text
}
