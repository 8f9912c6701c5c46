//! Where events go: fresh storage for every phase of a run, so no phase reads another's rows.
//! For SQLite, a new directory on the disk being measured; for PostgreSQL, a new database.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use doorstep_server::Settings;
use doorstep_store::{
    EventStore, PostgresEventStore, PostgresSettings, SqliteEventStore, SqliteSettings,
};
use tempfile::TempDir;
use uuid::Uuid;

/// The backend under test.
pub enum Backend {
    /// Fresh directories are made under `root`.
    Sqlite { root: PathBuf },
    /// Fresh databases are made on the server at `admin_url`, or, without one, in a throw-away
    /// cluster started by `doorstep-test-postgres`.
    Postgres { admin_url: Option<String> },
}

/// One phase's own storage.
pub enum Storage {
    Sqlite {
        dir: TempDir,
    },
    Postgres {
        url: String,
        /// Set when this run created the database on a server it was given, so it drops it.
        created_on: Option<(String, String)>,
    },
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }

    /// Where the storage lives, for the report (without any password).
    pub fn location(&self) -> String {
        match self {
            Self::Sqlite { root } => root.display().to_string(),
            Self::Postgres {
                admin_url: Some(url),
            } => without_password(url),
            Self::Postgres { admin_url: None } => {
                "a throw-away cluster from doorstep-test-postgres".to_owned()
            }
        }
    }

    /// New, empty storage; `purpose` names it (`intake`, `baseline`, …).
    pub async fn fresh_storage(&self, purpose: &str) -> anyhow::Result<Storage> {
        match self {
            Self::Sqlite { root } => {
                std::fs::create_dir_all(root)
                    .with_context(|| format!("creating {}", root.display()))?;
                let dir = tempfile::Builder::new()
                    .prefix(&format!("{purpose}-"))
                    .tempdir_in(root)
                    .with_context(|| format!("creating a directory in {}", root.display()))?;
                Ok(Storage::Sqlite { dir })
            }
            Self::Postgres {
                admin_url: Some(admin_url),
            } => {
                let name = format!("doorstep_bench_{purpose}_{}", Uuid::new_v4().simple());
                let url = doorstep_test_postgres::create_database_on(admin_url, &name)
                    .await
                    .with_context(|| {
                        format!("creating {name} on {}", without_password(admin_url))
                    })?;
                Ok(Storage::Postgres {
                    url,
                    created_on: Some((admin_url.clone(), name)),
                })
            }
            Self::Postgres { admin_url: None } => {
                let Some(database) = doorstep_test_postgres::fresh_database().await else {
                    bail!(
                        "no PostgreSQL available: pass --database postgres://… or install \
                         initdb and pg_ctl"
                    );
                };
                Ok(Storage::Postgres {
                    url: database.url().to_owned(),
                    created_on: None,
                })
            }
        }
    }
}

impl Storage {
    /// The server's settings: test defaults (loopback, port 0) on this storage.
    pub fn server_settings(&self, scratch_dir: &Path) -> Settings {
        match self {
            Self::Sqlite { dir } => Settings::for_tests(dir.path()),
            Self::Postgres { url, .. } => {
                let mut settings = Settings::for_tests(scratch_dir);
                settings.database = doorstep_server::settings::DatabaseSettings::new(url);
                // On PostgreSQL the master key is never made up: the operator gives it.
                settings.privacy.master_key =
                    Some("ZG9vcnN0ZXAgYmVuY2ggbWFzdGVyIGtleSAhISEhISE=".into());
                settings
            }
        }
    }

    /// Opens the store directly, without the server.
    pub async fn open_store(&self) -> anyhow::Result<OpenedStore> {
        match self {
            Self::Sqlite { dir } => {
                let path = dir.path().join("events.db");
                let store = SqliteEventStore::open(SqliteSettings::new(&path))
                    .await
                    .with_context(|| {
                        format!("opening a SQLite event store at {}", path.display())
                    })?;
                Ok(OpenedStore::Sqlite(store))
            }
            Self::Postgres { url, .. } => {
                let store = PostgresEventStore::open(PostgresSettings::new(url.clone()))
                    .await
                    .with_context(|| {
                        format!(
                            "opening a PostgreSQL event store at {}",
                            without_password(url)
                        )
                    })?;
                Ok(OpenedStore::Postgres(store))
            }
        }
    }

    /// Removes what this run made, or with `keep`, says where it is.
    pub async fn finish(self, keep: bool) -> anyhow::Result<()> {
        match self {
            Self::Sqlite { dir } if keep => {
                eprintln!("kept {}", dir.keep().display());
                Ok(())
            }
            Self::Sqlite { dir } => dir.close().context("removing a benchmark data directory"),
            Self::Postgres {
                url,
                created_on: Some((admin_url, name)),
            } => {
                if keep {
                    eprintln!("kept {}", without_password(&url));
                    return Ok(());
                }
                doorstep_test_postgres::drop_database_on(&admin_url, &name)
                    .await
                    .with_context(|| format!("dropping {name} on {}", without_password(&admin_url)))
            }
            // The throw-away cluster disappears with this process.
            Self::Postgres {
                created_on: None, ..
            } => Ok(()),
        }
    }

    /// For PostgreSQL, the server's version and durability settings, which decide what a
    /// commit costs.
    pub async fn describe(&self) -> Option<String> {
        let Self::Postgres { url, .. } = self else {
            return None;
        };
        const SETTINGS: [&str; 5] = [
            "server_version",
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
            "full_page_writes",
        ];
        // Readable by superusers only; the throw-away cluster's user is one.
        let mut names = SETTINGS.to_vec();
        names.push("data_directory");
        let mut values = doorstep_test_postgres::show_settings(url, &names)
            .await
            .ok()?;
        let data_directory = values.pop().flatten();
        let mut shown = SETTINGS
            .iter()
            .zip(values)
            .map(|(setting, value)| Some(format!("{setting}={}", value?)))
            .collect::<Option<Vec<_>>>()?;
        if let Some(filesystem) = data_directory
            .as_deref()
            .and_then(|dir| crate::machine::filesystem_of(Path::new(dir)))
        {
            shown.push(format!("data on {filesystem}"));
        }
        Some(shown.join(", "))
    }
}

/// A store opened directly on a phase's storage.
pub enum OpenedStore {
    Sqlite(SqliteEventStore),
    Postgres(PostgresEventStore),
}

impl OpenedStore {
    pub fn shared(&self) -> Arc<dyn EventStore> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// Transactions committed since the store was opened.
    pub fn commits(&self) -> u64 {
        match self {
            Self::Sqlite(store) => store.commits(),
            Self::Postgres(store) => store.commits(),
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(store) => store.close().await,
            Self::Postgres(store) => store.close().await,
        }
    }
}

/// The URL with any password replaced by `***`, for printing.
pub fn without_password(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |index| index + 3);
    let authority_end = url[authority_start..]
        .find(['/', '?'])
        .map_or(url.len(), |index| authority_start + index);
    let authority = &url[authority_start..authority_end];
    let Some((credentials, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let Some((user, _password)) = credentials.split_once(':') else {
        return url.to_owned();
    };
    format!(
        "{}{user}:***@{host}{}",
        &url[..authority_start],
        &url[authority_end..]
    )
}

#[cfg(test)]
mod tests {
    use doorstep_test_postgres::with_database;

    use super::without_password;

    #[test]
    fn database_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b1"),
            "postgres://postgres@127.0.0.1:5432/b1"
        );
        assert_eq!(
            with_database("postgres://user:secret@db:5432?sslmode=disable", "b1"),
            "postgres://user:secret@db:5432/b1?sslmode=disable"
        );
        assert_eq!(
            without_password("postgres://user:secret@db:5432/x?sslmode=disable"),
            "postgres://user:***@db:5432/x?sslmode=disable"
        );
        assert_eq!(
            without_password("postgres://user@db/x"),
            "postgres://user@db/x"
        );
    }
}
