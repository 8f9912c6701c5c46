//! What every read-model test needs: an event store and a read-model database on one backend
//! (SQLite, or PostgreSQL when one is available), and domain events written through the real
//! store. (A full dump of the read-model tables is `ReadModelDatabase::snapshot`.)
//!
//! Each test is written once as `async fn name(backend: TestBackend)` and instantiated for both
//! backends with `on_every_backend!(name)`; without PostgreSQL its PostgreSQL instance returns at
//! once, after `doorstep_test_postgres` has said so loudly.

// Each test file uses a different part of this module.
#![allow(dead_code, unused_macros)]

use std::sync::Arc;

use doorstep_projections::{ProjectionRunner, ReadModel, ReadModelDatabase};
use doorstep_store::{
    EventMetadata, EventStore, ExpectedVersion, NewEvent, PostgresEventStore, PostgresSettings,
    SqliteEventStore, SqliteSettings, StreamId,
};

pub fn valid<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|error| panic!("test input is valid: {error:?}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// An event store and the URL of the read-model database beside it.
pub struct TestBackend {
    pub kind: Kind,
    pub store: Arc<dyn EventStore>,
    pub url: String,
    sqlite: Option<SqliteEventStore>,
    postgres: Option<PostgresEventStore>,
    _directory: Option<tempfile::TempDir>,
}

impl TestBackend {
    /// A fresh, empty backend; None when `kind` is PostgreSQL and none is available.
    pub async fn open(kind: Kind) -> Option<Self> {
        match kind {
            Kind::Sqlite => {
                let directory = valid(tempfile::tempdir());
                let path = directory.path().join("log.db");
                let sqlite = valid(SqliteEventStore::open(SqliteSettings::new(&path)).await);
                Some(Self {
                    kind,
                    store: Arc::new(sqlite.clone()),
                    url: format!("sqlite://{}", path.display()),
                    sqlite: Some(sqlite),
                    postgres: None,
                    _directory: Some(directory),
                })
            }
            Kind::Postgres => {
                let database = doorstep_test_postgres::fresh_database().await?;
                let url = database.url().to_owned();
                let postgres =
                    valid(PostgresEventStore::open(PostgresSettings::new(url.as_str())).await);
                Some(Self {
                    kind,
                    store: Arc::new(postgres.clone()),
                    url,
                    sqlite: None,
                    postgres: Some(postgres),
                    _directory: None,
                })
            }
        }
    }

    /// Opens the read models on this backend's database, counting working days in England and
    /// Wales.
    pub async fn projections(&self) -> (ProjectionRunner, ReadModel, ReadModelDatabase) {
        let database = valid(ReadModelDatabase::open(&self.url).await);
        let (runner, read_model) =
            valid(ProjectionRunner::open(self.store.clone(), database.clone(), calendar()).await);
        (runner, read_model, database)
    }

    pub async fn close(self) {
        if let Some(sqlite) = &self.sqlite {
            sqlite.close().await;
        }
        if let Some(postgres) = &self.postgres {
            postgres.close().await;
        }
    }
}

/// Appends already-decided events to a stream, as the service does after `handle`.
pub async fn append(
    store: &Arc<dyn EventStore>,
    stream: &StreamId,
    events: impl IntoIterator<Item = (&'static str, u32, serde_json::Value)>,
) {
    let new_events: Vec<NewEvent> = events
        .into_iter()
        .map(|(event_type, schema_version, payload)| NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: event_type.to_owned(),
            schema_version,
            payload,
            metadata: EventMetadata::default(),
        })
        .collect();
    if new_events.is_empty() {
        return;
    }
    valid(store.append(stream, ExpectedVersion::Any, new_events).await);
}

/// Instantiates `async fn name(backend: TestBackend)` once per backend, as `name::sqlite` and
/// `name::postgres`.
macro_rules! on_every_backend {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(backend) =
                        $crate::support::TestBackend::open($crate::support::Kind::Sqlite).await
                    {
                        super::$name(backend).await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(backend) =
                        $crate::support::TestBackend::open($crate::support::Kind::Postgres).await
                    {
                        super::$name(backend).await;
                    }
                }
            }
        )+
    };
}

/// The calendar the projections count working days with in these tests.
pub fn calendar() -> Arc<doorstep_domain::WorkingDayCalendar> {
    Arc::new(doorstep_domain::WorkingDayCalendar::england_and_wales())
}

/// A complaint written through the real rules and the real store.
pub struct ComplaintWriter {
    pub id: doorstep_domain::input::ComplaintId,
    state: Option<doorstep_domain::complaint::Complaint>,
}

impl ComplaintWriter {
    /// Logs a new complaint against `acme-retrofit`, received at `received_at`.
    pub async fn log(backend: &TestBackend, received_at: chrono::DateTime<chrono::Utc>) -> Self {
        use doorstep_domain::complaint::Command;
        use doorstep_domain::input::ComplaintId;
        let id = ComplaintId::from_uuid(uuid::Uuid::now_v7());
        let mut writer = Self { id, state: None };
        let command = Command::Log(Box::new(log_complaint(id, "acme-retrofit", received_at)));
        writer.run(backend, command).await;
        writer
    }

    /// The complaint as the rules see it now.
    pub fn complaint(&self) -> &doorstep_domain::complaint::Complaint {
        self.state.as_ref().unwrap_or_else(|| panic!("logged"))
    }

    /// Decides `command` on the complaint, appends what it produces and returns it.
    pub async fn run(
        &mut self,
        backend: &TestBackend,
        command: doorstep_domain::complaint::Command,
    ) -> Vec<doorstep_domain::Event> {
        use doorstep_domain::complaint::{HandlingContext, apply, handle};
        let calendar = doorstep_domain::WorkingDayCalendar::england_and_wales();
        let context = HandlingContext {
            calendar: &calendar,
            timescales: Default::default(),
        };
        let events = valid(handle(self.state.as_ref(), command, &context));
        for event in &events {
            self.state = apply(self.state.take(), event);
        }
        append_complaint_events(
            &backend.store,
            &StreamId::new("complaint", self.id),
            &events,
        )
        .await;
        events
    }
}

/// Appends a complaint's events, in their stored form, to `stream`.
pub async fn append_complaint_events(
    store: &Arc<dyn EventStore>,
    stream: &StreamId,
    events: &[doorstep_domain::Event],
) {
    append(
        store,
        stream,
        events.iter().map(|event| {
            (
                event.event_type(),
                event.schema_version(),
                event.to_payload(),
            )
        }),
    )
    .await;
}

/// A complaint received at `received_at` against `contractor`: on the web portal, from resident
/// T-1 at 1 Road, about tidiness, with nothing optional filled in.
pub fn log_complaint(
    id: doorstep_domain::input::ComplaintId,
    contractor: &str,
    received_at: chrono::DateTime<chrono::Utc>,
) -> doorstep_domain::complaint::LogComplaint {
    use doorstep_domain::complaint::{LogComplaint, PropertyInput, ResidentInput};
    use doorstep_domain::input::{
        Address, ContractorId, LongText, OptionalText, PersonName, ResidentReference, SourceSystem,
        Uprn,
    };
    LogComplaint {
        complaint_id: id,
        channel: "WEB".to_owned(),
        source_system: valid(SourceSystem::parse("source_system", "portal")),
        resident: ResidentInput {
            reference: valid(ResidentReference::parse("r", "T-1")),
            name: valid(PersonName::parse("n", "A Resident")),
            phone: None,
            email: None,
        },
        property: PropertyInput {
            uprn: valid(Uprn::parse("u", "123456")),
            address: valid(Address::parse("a", "1 Road")),
        },
        contractor_id: valid(ContractorId::parse("c", contractor)),
        visit_id: None,
        standards: vec![doorstep_domain::ServiceStandard::Tidiness],
        description: LongText::default(),
        occurred_at: None,
        received_at,
        outcome_sought: OptionalText::default(),
        reasonable_adjustments: OptionalText::default(),
    }
}
