//! The storage backend the settings select: the event store and the read-model database,
//! in one PostgreSQL database, or in two SQLite files side by side (see
//! `DatabaseSettings::read_model_url`).

use std::sync::Arc;

use doorstep_projections::{ProjectionError, ReadModelDatabase};
use doorstep_store::{
    ConsoleSessionStore, EventStore, GenerationRegistry, PostgresEventStore, PostgresSettings,
    ResidentKeyStore, ServerRegistry, SqliteEventStore, SqliteSettings, StoreError,
};

use crate::settings::DatabaseSettings;

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("cannot open the event store")]
    Store(#[from] StoreError),
    #[error("cannot open the read models")]
    Projections(#[from] ProjectionError),
    #[error("cannot create or restrict the data file or directory {path}")]
    DataFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An opened event store, whichever backend it is.
#[derive(Clone)]
pub enum OpenedStore {
    Sqlite(SqliteEventStore),
    Postgres(PostgresEventStore),
}

impl OpenedStore {
    /// Opens the store the URL names and applies its migrations.
    pub async fn open(database: &DatabaseSettings) -> Result<Self, BackendError> {
        if database.is_postgres() {
            return Ok(Self::Postgres(
                PostgresEventStore::open(PostgresSettings::new(database.url().to_owned())).await?,
            ));
        }
        let path = database.sqlite_path().map_err(BackendError::Settings)?;
        Ok(Self::Sqlite(
            SqliteEventStore::open(SqliteSettings::new(path)).await?,
        ))
    }

    pub fn shared(&self) -> Arc<dyn EventStore> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// The store's database, where running servers register themselves.
    pub fn server_registry(&self) -> Arc<dyn ServerRegistry> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// The store's database, where the read-model generations are registered.
    pub fn generations(&self) -> Arc<dyn GenerationRegistry> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// The store's database, where the resident keys live.
    pub fn resident_keys(&self) -> Arc<dyn ResidentKeyStore> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// The store's database, where the console's sessions live.
    pub fn console_sessions(&self) -> Arc<dyn ConsoleSessionStore> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// Asks the store's database for an answer: for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(store) => store.ping().await,
            Self::Postgres(store) => store.ping().await,
        }
    }

    /// Lets in-flight appends finish, then closes the store.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(store) => store.close().await,
            Self::Postgres(store) => store.close().await,
        }
    }
}

/// Opens generation `generation` of the read models beside the event store (generation 0 is
/// the read-model database as it was before generations; see `doorstep_projections::generation`)
/// and applies its migrations.
pub async fn open_read_models(
    database: &DatabaseSettings,
    generation: u64,
) -> Result<ReadModelDatabase, BackendError> {
    let url = database.read_model_url().map_err(BackendError::Settings)?;
    if !database.is_postgres() {
        let path = database
            .sqlite_read_model_path()
            .map_err(BackendError::Settings)?;
        // Generation 0's file holds the outbox every generation shares.
        create_private_file(&path)?;
        create_private_file(&doorstep_projections::sqlite_generation_file(
            &path, generation,
        ))?;
    }
    Ok(ReadModelDatabase::open_generation(&url, generation).await?)
}

/// Creates a SQLite file readable and writable by its owner only, before SQLite would create it
/// 0644 (its WAL and shared-memory files take its mode), and takes group and other access away
/// from one an earlier version created. The event store does the same for its own file.
fn create_private_file(path: &std::path::Path) -> Result<(), BackendError> {
    let io = |source| BackendError::DataFile {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(io)?;
        }
    }
    Ok(())
}
