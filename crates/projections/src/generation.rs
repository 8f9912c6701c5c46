//! Where a generation of the read models lives, for `doorstep projections rebuild --online`,
//! which builds the next generation beside the live one and switches every server to it.
//!
//! Generation 0 is the read models as they were before generations: on SQLite the file
//! `<name>.read-models.db` beside the log, on PostgreSQL the public schema. Generation N ≥ 1 is
//! the file `<name>.read-models.g<N>.db` beside it, or the schema `read_models_g<N>`, reached
//! through each connection's `search_path` (`read_models_g<N>, public`). Their tables are made
//! by the read models' own migrations, run into that place.
//!
//! The delivery outbox (`escalation_deliveries`) is delivery state, not derived from the log, so
//! it is not generational: it stays where generation 0 keeps it for ever. A later generation's
//! own copy is dropped after its migrations, so the one name resolves to the shared table: on
//! SQLite generation 0's file is ATTACHed to each of the generation's connections (unqualified
//! names are looked up in `main`, then the attached files); on PostgreSQL `public` follows the
//! generation's schema on the `search_path`.

use std::path::{Path, PathBuf};

// Every statement made here names only a schema made of a number or a table from `RESET`,
// or a file path with its quotes doubled.
use sqlx::AnyConnection;

use crate::ProjectionError;
use crate::database::Backend;

/// The schema name a SQLite connection gives generation 0's file when it attaches it.
const SHARED_OUTBOX: &str = "shared_outbox";

/// Where generation N ≥ 1 lives, and how its connections reach the shared outbox.
#[derive(Debug, Clone)]
pub(crate) struct GenerationPlace {
    /// What to connect to.
    pub(crate) url: String,
    /// SQLite: generation 0's file, which holds the shared outbox.
    outbox_file: Option<PathBuf>,
    /// PostgreSQL: the generation's schema.
    schema: Option<String>,
}

/// What a new connection runs to be in its generation.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    attach: Option<PathBuf>,
    schema: Option<String>,
    /// Create the schema first (only the migrating pool does: connections creating one schema
    /// at once can collide even with IF NOT EXISTS).
    create: bool,
}

impl GenerationPlace {
    /// The setup of a connection: with `outbox`, also the shared outbox (SQLite). Migrations run
    /// without it, so that the generation's own tables are the ones they make.
    pub(crate) fn entry(&self, outbox: bool) -> Entry {
        Entry {
            attach: self.outbox_file.clone().filter(|_| outbox),
            schema: self.schema.clone(),
            create: !outbox,
        }
    }

    /// The statement that drops the generation's own copy of the outbox, which its migrations
    /// made, named in its own schema so that it can never reach the shared one.
    pub(crate) fn own_outbox_drop(&self) -> String {
        match &self.schema {
            Some(schema) => format!("DROP TABLE IF EXISTS {schema}.escalation_deliveries"),
            None => "DROP TABLE IF EXISTS main.escalation_deliveries".to_owned(),
        }
    }
}

/// The SQLite file of `generation` of the read models whose generation 0 is `base`
/// (`doorstep.read-models.db` → `doorstep.read-models.g3.db`).
pub fn sqlite_generation_file(base: &Path, generation: u64) -> PathBuf {
    if generation == 0 {
        return base.to_owned();
    }
    let stem = base
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("doorstep.read-models");
    base.with_file_name(format!("{stem}.g{generation}.db"))
}

/// The PostgreSQL schema of `generation` (generation 0 is `public`).
pub fn postgres_generation_schema(generation: u64) -> String {
    if generation == 0 {
        "public".to_owned()
    } else {
        format!("read_models_g{generation}")
    }
}

/// The file a `sqlite:` URL names, and what follows it (`?mode=rwc`).
fn sqlite_url_parts(url: &str) -> Option<(&str, &str)> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    Some(match rest.find('?') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    })
}

fn backend_of(url: &str) -> Result<Backend, ProjectionError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(ProjectionError::UnsupportedUrl)
    }
}

/// Where `generation` ≥ 1 of the read models whose generation 0 is at `url` lives.
pub(crate) fn place(url: &str, generation: u64) -> Result<GenerationPlace, ProjectionError> {
    match backend_of(url)? {
        Backend::Sqlite => {
            let (path, options) = sqlite_url_parts(url).ok_or(ProjectionError::UnsupportedUrl)?;
            let base = PathBuf::from(path);
            let file = sqlite_generation_file(&base, generation);
            Ok(GenerationPlace {
                url: format!("sqlite://{}{options}", file.display()),
                outbox_file: Some(base),
                schema: None,
            })
        }
        Backend::Postgres => Ok(GenerationPlace {
            url: url.to_owned(),
            outbox_file: None,
            schema: Some(postgres_generation_schema(generation)),
        }),
    }
}

/// Puts a new connection in its generation: the schema first on its `search_path`
/// (PostgreSQL, creating it when it is new), or generation 0's file attached (SQLite).
pub(crate) async fn enter(
    connection: &mut AnyConnection,
    backend: Backend,
    entry: Entry,
) -> Result<(), sqlx::Error> {
    match backend {
        Backend::Postgres => {
            if let Some(schema) = entry.schema {
                if entry.create {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "CREATE SCHEMA IF NOT EXISTS {schema}"
                    )))
                    .execute(&mut *connection)
                    .await?;
                }
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SET search_path TO {schema}, public"
                )))
                .execute(&mut *connection)
                .await?;
            }
        }
        Backend::Sqlite => {
            if let Some(file) = entry.attach {
                let quoted = file.display().to_string().replace('\'', "''");
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ATTACH DATABASE '{quoted}' AS {SHARED_OUTBOX}"
                )))
                .execute(&mut *connection)
                .await?;
            }
        }
    }
    Ok(())
}

/// Drops `generation` of the read models whose generation 0 is at `url`, once no server reads
/// it: a later generation's file (with its WAL) or schema, or generation 0's derived tables,
/// keeping the outbox, which every generation shares, and the migration history beside it.
pub async fn drop_generation(url: &str, generation: u64) -> Result<(), ProjectionError> {
    let backend = backend_of(url)?;
    if generation == 0 {
        sqlx::any::install_default_drivers();
        let mut connection = <AnyConnection as sqlx::Connection>::connect(url).await?;
        for table in crate::runner::derived_tables() {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
                .execute(&mut connection)
                .await?;
        }
        if backend == Backend::Sqlite {
            // The file stays (it holds the outbox every generation shares), and SQLite keeps a
            // dropped table's pages in it as free pages: the whole of the old read models, 660
            // MB at ten million events. VACUUM copies what is left (the outbox) into a compact
            // file, quickly; servers' reads carry on, and a write to the outbox waits for it.
            sqlx::query("VACUUM").execute(&mut connection).await?;
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut connection)
                .await?;
        }
        sqlx::Connection::close(connection).await?;
        return Ok(());
    }
    match backend {
        Backend::Sqlite => {
            let (path, _) = sqlite_url_parts(url).ok_or(ProjectionError::UnsupportedUrl)?;
            let file = sqlite_generation_file(Path::new(path), generation);
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut name = file.clone().into_os_string();
                name.push(suffix);
                match std::fs::remove_file(&name) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(ProjectionError::Io(error)),
                }
            }
        }
        Backend::Postgres => {
            sqlx::any::install_default_drivers();
            let mut connection = <AnyConnection as sqlx::Connection>::connect(url).await?;
            let schema = postgres_generation_schema(generation);
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE"
            )))
            .execute(&mut connection)
            .await?;
            sqlx::Connection::close(connection).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_generation_lives_beside_generation_0() {
        let base = Path::new("/data/doorstep.read-models.db");
        assert_eq!(sqlite_generation_file(base, 0), base);
        assert_eq!(
            sqlite_generation_file(base, 3),
            Path::new("/data/doorstep.read-models.g3.db")
        );
        let place = place("sqlite:///data/doorstep.read-models.db?mode=rwc", 2)
            .expect("a SQLite URL has a place");
        assert_eq!(
            place.url,
            "sqlite:///data/doorstep.read-models.g2.db?mode=rwc"
        );
        assert_eq!(postgres_generation_schema(7), "read_models_g7");
    }
}
