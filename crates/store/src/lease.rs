//! Keeps a master key rotation and running servers apart. A server wraps new resident keys
//! under the newest master key generation it loaded at start; a rotation that ran beside it
//! would leave those keys under a generation the operator is about to destroy. So every server
//! holds a shared lease on its database for as long as it runs, and a rotation takes the lease
//! exclusively, refusing to start while any server holds it (and a server refuses to start while
//! a rotation runs).
//!
//! On SQLite the lease is an advisory lock (`flock`) on a file beside the database,
//! `<database>.lock` (never the database file itself: closing any other descriptor of that file
//! would drop SQLite's own locks). On PostgreSQL it is an advisory lock, shared by each replica
//! on a connection of its own, taken exclusively by the rotation's transaction. (Should that
//! connection break, a PostgreSQL restart say, the replica's lease is gone until it restarts:
//! the operator's runbook stops every replica before a rotation in any case.)

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Connection;

/// The PostgreSQL advisory lock key of the lease: "DOORSTEP" in ASCII.
pub(crate) const POSTGRES_LEASE_KEY: i64 = 0x444f_4f52_5354_4550;

/// How long a rotation waits for servers to let go of the lease. A server that has just stopped
/// may take a moment: its PostgreSQL session ends when PostgreSQL notices the closed connection.
pub const EXCLUSIVE_WAIT: Duration = Duration::from_secs(5);
const POSTGRES_EXCLUSIVE_WAIT: &str = "SET LOCAL lock_timeout = '5s'";

/// A server's shared hold on its database, or a rotation's exclusive one; released when
/// dropped.
pub struct ServerLease {
    _held: Held,
}

/// What keeps the lease: the locked file, or the session that holds the advisory lock.
enum Held {
    Sqlite { _file: File },
    Postgres { _session: sqlx::PgConnection },
}

impl ServerLease {
    fn sqlite(file: File) -> Self {
        Self {
            _held: Held::Sqlite { _file: file },
        }
    }
}

/// Why a lease was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "a master key rotation is running on this database; start the server once it has finished"
    )]
    RotationRunning,
    #[error(
        "a Doorstep server is running on this database; stop every server (all replicas) before \
         rotating the master key"
    )]
    ServerRunning,
    #[error("cannot open or lock {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot take the advisory lock")]
    Database(#[from] sqlx::Error),
}

/// The lock file of a SQLite database.
pub fn lock_file(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn open_lock_file(database: &Path) -> Result<(File, PathBuf), LeaseError> {
    let path = lock_file(database);
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&path).map_err(|source| LeaseError::File {
        path: path.clone(),
        source,
    })?;
    Ok((file, path))
}

fn locked(
    file: File,
    path: PathBuf,
    taken: Result<(), TryLockError>,
    busy: LeaseError,
) -> Result<File, LeaseError> {
    match taken {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(busy),
        Err(TryLockError::Error(source)) => Err(LeaseError::File { path, source }),
    }
}

impl ServerLease {
    /// A server's shared lease on a SQLite database.
    pub fn sqlite_shared(database: &Path) -> Result<Self, LeaseError> {
        let (file, path) = open_lock_file(database)?;
        let taken = file.try_lock_shared();
        locked(file, path, taken, LeaseError::RotationRunning).map(Self::sqlite)
    }

    /// A rotation's exclusive lease on a SQLite database, waiting up to [`EXCLUSIVE_WAIT`] for
    /// a server that is stopping to let go.
    pub async fn sqlite_exclusive(database: &Path) -> Result<Self, LeaseError> {
        let (file, path) = open_lock_file(database)?;
        let deadline = tokio::time::Instant::now() + EXCLUSIVE_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self::sqlite(file)),
                Err(TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                taken => {
                    return locked(file, path, taken, LeaseError::ServerRunning).map(Self::sqlite);
                }
            }
        }
    }

    /// A server's shared lease on a PostgreSQL database, on a connection taken out of `pool`
    /// for as long as the lease lives.
    pub(crate) async fn postgres_shared(pool: &sqlx::PgPool) -> Result<Self, LeaseError> {
        let mut connection = pool.acquire().await?.detach();
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock_shared($1)")
            .bind(POSTGRES_LEASE_KEY)
            .fetch_one(&mut connection)
            .await?;
        if !taken {
            let _ = connection.close().await;
            return Err(LeaseError::RotationRunning);
        }
        Ok(Self {
            _held: Held::Postgres {
                _session: connection,
            },
        })
    }
}

/// Takes the lease exclusively for the rest of `transaction`, waiting up to
/// [`EXCLUSIVE_WAIT`] for servers that are stopping to let go, or says a server holds it.
pub(crate) async fn postgres_exclusive(
    transaction: &mut sqlx::PgConnection,
) -> Result<(), LeaseError> {
    sqlx::raw_sql(POSTGRES_EXCLUSIVE_WAIT)
        .execute(&mut *transaction)
        .await?;
    let taken = sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(POSTGRES_LEASE_KEY)
        .execute(&mut *transaction)
        .await;
    match taken {
        Ok(_) => Ok(()),
        // lock_not_available: the wait ran out.
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("55P03") => {
            Err(LeaseError::ServerRunning)
        }
        Err(error) => Err(error.into()),
    }
}
