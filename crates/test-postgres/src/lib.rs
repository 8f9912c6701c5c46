//! A throw-away PostgreSQL for tests: every call to [`fresh_database`] creates a new, empty
//! database, so tests never see each other's rows.
//!
//! Where the server comes from, in order:
//!
//! 1. `DOORSTEP_TEST_DATABASE_URL`, when set: that server is used, and each test gets a database
//!    of its own on it (`doorstep_test_<uuid>`), which is left behind.
//! 2. Otherwise one cluster per test process, started from the system's `initdb` and `pg_ctl`
//!    (found on `PATH` or under `/usr/lib/postgresql/<version>/bin`, newest version first) in a
//!    temporary directory, listening on a free port of 127.0.0.1. `initdb` refuses to run as
//!    root, so as root the cluster runs as the `postgres` user. A small watchdog process stops
//!    the cluster and removes its directory once the test process has exited, since Rust runs no
//!    destructors for statics.
//! 3. Otherwise PostgreSQL tests are skipped: [`fresh_database`] returns `None` after saying so
//!    loudly on stderr, unless `DOORSTEP_REQUIRE_POSTGRES=1`, which turns the skip into a test
//!    failure (CI sets it).
//!
//! ```ignore
//! let Some(database) = doorstep_test_postgres::fresh_database().await else { return };
//! let store = PostgresEventStore::open(PostgresSettings::new(database.url())).await?;
//! ```

mod cluster;

use std::io::Write;
use std::sync::OnceLock;

use sqlx::{ConnectOptions, Connection, Executor};
use uuid::Uuid;

use self::cluster::Cluster;

/// Names a server to use instead of starting a cluster.
const DATABASE_URL_VARIABLE: &str = "DOORSTEP_TEST_DATABASE_URL";

/// When `1`, a missing PostgreSQL fails the tests instead of skipping them.
const REQUIRE_VARIABLE: &str = "DOORSTEP_REQUIRE_POSTGRES";

/// One test's own database. Nothing happens when it is dropped: databases are left in the
/// throw-away cluster, which disappears with the test process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDatabase {
    url: String,
}

impl TestDatabase {
    /// A `postgres://` URL of the database, for `PgConnectOptions::from_str` or a store's
    /// settings.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A new, empty database for one test, or `None` when no PostgreSQL is available (and
/// `DOORSTEP_REQUIRE_POSTGRES` is not `1`); see the crate documentation.
///
/// # Panics
///
/// When PostgreSQL is required but unavailable, or when an available server refuses to create
/// the database: both are test failures, not reasons to skip.
pub async fn fresh_database() -> Option<TestDatabase> {
    let server = match server().await {
        Ok(server) => server,
        Err(reason) if postgres_is_required() => {
            panic!("PostgreSQL is required ({REQUIRE_VARIABLE}=1) but unavailable: {reason}")
        }
        Err(_) => return None,
    };
    match create_database(&server).await {
        Ok(database) => Some(database),
        Err(error) => panic!(
            "cannot create a test database on {}: {error}",
            server.admin_url
        ),
    }
}

/// A server on which test databases can be created.
#[derive(Debug, Clone)]
struct Server {
    /// Where `CREATE DATABASE` is run.
    admin_url: String,
}

/// Finds (or starts) the server once per test process. Starting a cluster runs blocking
/// commands for a second or two, so it happens on a blocking thread; tests that ask meanwhile
/// wait for the same cluster.
async fn server() -> Result<Server, String> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    if let Some(found) = SERVER.get() {
        return found.clone();
    }
    let found = tokio::task::spawn_blocking(|| SERVER.get_or_init(find_server).clone()).await;
    match found {
        Ok(found) => found,
        Err(error) => Err(format!("finding PostgreSQL panicked: {error}")),
    }
}

fn find_server() -> Result<Server, String> {
    if let Some(url) = std::env::var(DATABASE_URL_VARIABLE)
        .ok()
        .filter(|url| !url.trim().is_empty())
    {
        return Ok(Server { admin_url: url });
    }
    match Cluster::start() {
        Ok(cluster) => Ok(Server {
            admin_url: cluster.admin_url(),
        }),
        Err(reason) => {
            announce_skip(&reason);
            Err(reason)
        }
    }
}

/// Says once per test process, past the test harness's output capture, that PostgreSQL tests
/// are not really running.
fn announce_skip(reason: &str) {
    let message = format!(
        "\n\
         ********************************************************************************\n\
         PostgreSQL tests SKIPPED: {reason}\n\
         Install PostgreSQL (initdb and pg_ctl) or set {DATABASE_URL_VARIABLE};\n\
         set {REQUIRE_VARIABLE}=1 to make this a failure.\n\
         ********************************************************************************\n"
    );
    // Written to the stream itself: the harness captures `eprintln!` of passing tests.
    let _ = std::io::stderr().write_all(message.as_bytes());
}

fn postgres_is_required() -> bool {
    std::env::var(REQUIRE_VARIABLE).is_ok_and(|value| matches!(value.trim(), "1" | "true"))
}

async fn create_database(server: &Server) -> Result<TestDatabase, sqlx::Error> {
    let name = format!("doorstep_test_{}", Uuid::new_v4().simple());
    Ok(TestDatabase {
        url: create_database_on(&server.admin_url, &name).await?,
    })
}

/// Creates the database `name` on the server of `admin_url` (a user allowed to) and returns its
/// URL. `name` must hold only letters, digits and underscores: it is not quoted.
pub async fn create_database_on(admin_url: &str, name: &str) -> Result<String, sqlx::Error> {
    run_admin_statement(admin_url, &format!("CREATE DATABASE {name}")).await?;
    Ok(with_database(admin_url, name))
}

/// Drops the database `name` on the server of `admin_url`, ending its sessions. `name` must hold
/// only letters, digits and underscores: it is not quoted.
pub async fn drop_database_on(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    run_admin_statement(admin_url, &format!("DROP DATABASE {name} WITH (FORCE)")).await
}

async fn run_admin_statement(admin_url: &str, statement: &str) -> Result<(), sqlx::Error> {
    let admin_options: sqlx::postgres::PgConnectOptions = admin_url.parse()?;
    let mut admin = admin_options.connect().await?;
    admin
        .execute(sqlx::AssertSqlSafe(statement.to_owned()))
        .await?;
    admin.close().await
}

/// The values of server settings (`SHOW <name>`) on the database at `url`, in order; `None` for
/// one this user may not read (`data_directory` is for superusers). `names` must be setting
/// names: they are not quoted.
pub async fn show_settings(url: &str, names: &[&str]) -> Result<Vec<Option<String>>, sqlx::Error> {
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    let mut connection = options.connect().await?;
    let mut values = Vec::with_capacity(names.len());
    for name in names {
        let value: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}")))
            .fetch_one(&mut connection)
            .await
            .ok();
        values.push(value);
    }
    connection.close().await?;
    Ok(values)
}

/// The URL with its database (the path) replaced, keeping credentials, host and parameters.
pub fn with_database(url: &str, database: &str) -> String {
    let authority_start = url.find("://").map_or(0, |index| index + 3);
    let authority_end = url[authority_start..]
        .find(['/', '?'])
        .map_or(url.len(), |index| authority_start + index);
    let query = url[authority_end..]
        .find('?')
        .map_or("", |index| &url[authority_end + index..]);
    format!("{}/{database}{query}", &url[..authority_end])
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://user:secret@db:5432?sslmode=disable", "t1"),
            "postgres://user:secret@db:5432/t1?sslmode=disable"
        );
        assert_eq!(
            with_database(
                "postgresql://db/app?application_name=x&sslmode=require",
                "t2"
            ),
            "postgresql://db/t2?application_name=x&sslmode=require"
        );
        assert_eq!(with_database("postgres://db", "t3"), "postgres://db/t3");
    }
}
