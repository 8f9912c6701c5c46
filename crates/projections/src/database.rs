//! The database that holds the read models: a SQLite file beside the event log's, or the log's
//! own PostgreSQL database, reached through sqlx's `Any` driver so every query is written once.
//!
//! Queries use `$1, $2, …` placeholders, which both SQLite and PostgreSQL accept.

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyConnection, AnyPool};

use crate::ProjectionError;

/// The page cache of each SQLite read-model connection, in KiB (64 MiB).
pub(crate) const SQLITE_CACHE: &str = "PRAGMA cache_size = -65536";

/// Which SQL dialect the read models live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where a pool's connections are: generation 0 (or a place with nothing to set up), a later
/// generation before its migrations have run, or a later generation ready to serve.
#[derive(Debug, Clone)]
enum Place {
    Base,
    Alone(crate::generation::GenerationPlace),
    Generation(crate::generation::GenerationPlace),
}

impl Place {
    /// What each new connection must do to be in the place: nothing, its generation's schema
    /// (PostgreSQL), or also the shared outbox.
    fn generation(&self) -> Option<crate::generation::Entry> {
        match self {
            Self::Base => None,
            Self::Alone(place) => Some(place.entry(false)),
            Self::Generation(place) => Some(place.entry(true)),
        }
    }
}

/// A pool on the read-model database and the dialect it speaks.
#[derive(Debug, Clone)]
pub struct ReadModelDatabase {
    pool: AnyPool,
    backend: Backend,
    /// The outbox is in another SQLite file (a later generation's connections attach generation
    /// 0's): the runner commits its rows apart, first (`outbox::hold_apart`).
    outbox_apart: bool,
}

impl ReadModelDatabase {
    /// Connects to `sqlite://…` or `postgres://…` and creates or upgrades the read-model tables.
    pub async fn open(url: &str) -> Result<Self, ProjectionError> {
        let database = Self::connect(url, Place::Base).await?;
        database.migrate().await?;
        Ok(database)
    }

    /// Opens read-model generation `generation` (see `generation.rs`) of the read models whose
    /// generation 0 is at `url` (`sqlite://…<name>.read-models.db…` or `postgres://…`), creating
    /// or upgrading its tables there. Generation 0 is [`ReadModelDatabase::open`]. A later one
    /// lives in a file `<name>.read-models.g<N>.db` beside it (SQLite) or a schema
    /// `read_models_g<N>` (PostgreSQL), and reaches the delivery outbox, which is not
    /// generational, where generation 0 keeps it.
    pub async fn open_generation(url: &str, generation: u64) -> Result<Self, ProjectionError> {
        if generation == 0 {
            return Self::open(url).await;
        }
        let place = crate::generation::place(url, generation)?;
        // Migrations run into the generation's own place, alone, then its outbox table is
        // dropped so that the one every generation shares is the one found by name.
        let database = Self::connect(&place.url.clone(), Place::Alone(place.clone())).await?;
        database.migrate().await?;
        sqlx::query(sqlx::AssertSqlSafe(place.own_outbox_drop()))
            .execute(&database.pool)
            .await?;
        database.close().await;
        let url = place.url.clone();
        Self::connect(&url, Place::Generation(place)).await
    }

    async fn connect(url: &str, place: Place) -> Result<Self, ProjectionError> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(ProjectionError::UnsupportedUrl);
        };
        let outbox_apart = backend == Backend::Sqlite && matches!(place, Place::Generation(_));
        install_default_drivers();
        let max_connections = match backend {
            // SQLite has one writer; a few readers are plenty beside the event store's own pool.
            Backend::Sqlite => 4,
            Backend::Postgres => 8,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            // sqlx pings a connection before lending it, by default: on SQLite a round trip to
            // the connection's thread on every query, for a local file that cannot have gone
            // away. PostgreSQL keeps the check, which finds connections a restart has broken.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |connection, _| {
                let place = place.clone();
                Box::pin(async move {
                    if let Some(generation) = place.generation() {
                        crate::generation::enter(connection, backend, generation).await?;
                    }
                    if backend == Backend::Sqlite {
                        // Read models can be rebuilt from the log, and each batch commits with
                        // its checkpoint, so a commit lost in a power cut is simply applied
                        // again: they need no fsync per commit. (WAL keeps the file consistent.)
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *connection)
                            .await?;
                        // Every batch touches index pages all over the file (complaint, visit
                        // and clock keys are random); SQLite's default 2 MB page cache would
                        // re-read them from the OS on every batch once the read models grow.
                        sqlx::query(SQLITE_CACHE).execute(&mut *connection).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        if backend == Backend::Sqlite {
            // Write-ahead logging lets queries read while the runner writes; the mode is kept in
            // the file, so setting it once per open is enough.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        Ok(Self {
            pool,
            backend,
            outbox_apart,
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the delivery outbox is in another file than the read models (see
    /// `outbox::hold_apart`).
    pub(crate) fn outbox_apart(&self) -> bool {
        self.outbox_apart
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Creates or upgrades the read-model tables. Their migration history is kept apart from the
    /// event store's, which may share the database.
    pub async fn migrate(&self) -> Result<(), ProjectionError> {
        let mut migrator = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator.dangerous_set_table_name("_doorstep_projection_migrations");
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Asks the database for an answer: for health checks.
    pub async fn ping(&self) -> Result<(), ProjectionError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Bound-value markers for `count` values numbered from `first`, comma-separated: `?` on SQLite,
/// `$n` on PostgreSQL. SQLite finds a named marker's index by a linear scan, and sqlx asks for
/// every value it binds, so a multi-row statement with hundreds of `$n` markers costs time
/// quadratic in its size to bind; anonymous `?` markers are bound by position.
pub(crate) fn placeholders(connection: &AnyConnection, first: usize, count: usize) -> String {
    let sqlite = connection.backend_name() == "SQLite";
    (first..first + count)
        .map(|n| {
            if sqlite {
                "?".to_owned()
            } else {
                format!("${n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(…), (…)` for `rows` rows of `width` values, numbered from 1; see [`placeholders`].
pub(crate) fn row_values(connection: &AnyConnection, rows: usize, width: usize) -> String {
    (0..rows)
        .map(|row| format!("({})", placeholders(connection, row * width + 1, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One page of `rows`, read one row longer than `page_size` to tell whether another page
/// follows, and the cursor of its last row when one does.
pub(crate) fn page<T, C>(
    mut rows: Vec<T>,
    page_size: u32,
    cursor: impl FnOnce(&T) -> C,
) -> (Vec<T>, Option<C>) {
    let has_more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    let next = if has_more {
        rows.last().map(cursor)
    } else {
        None
    };
    (rows, next)
}
