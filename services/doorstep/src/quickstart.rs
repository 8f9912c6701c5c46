//! `doorstep quickstart`: the keys the README's tour needs, made once and kept, and the shell
//! lines that put them in the environment.
//!
//! On a new installation the only key is the first admin key, and the admin role may not log,
//! acknowledge or read complaints: a person trying Doorstep needs a key for each role the tour
//! plays. This makes them (intake, officer, manager), each in a file of its own beside the key
//! store readable by its owner alone, and reuses them on the next run while they are still in
//! the key store. What it prints on stdout is only `export` lines that read those files, so
//! `eval "$(doorstep quickstart)"` works, and no secret reaches a terminal's scroll-back or a log.

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use crate::auth::Role;
use crate::auth::api_keys::{self, ApiKeyError, FIRST_ADMIN_KEY_FILE};
use crate::settings::Settings;

/// The tour's roles: the environment variable each key goes in, and the key's name.
const TOUR_KEYS: [(Role, &str, &str); 3] = [
    (Role::Intake, "DOORSTEP_INTAKE_KEY", "tour-intake"),
    (Role::Officer, "DOORSTEP_OFFICER_KEY", "tour-officer"),
    (Role::Manager, "DOORSTEP_MANAGER_KEY", "tour-manager"),
];

/// The directory, beside the key store, that holds the tour's keys.
const TOUR_DIRECTORY: &str = "tour";

#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    #[error(
        "quickstart is for trying Doorstep on the embedded default (SQLite); on PostgreSQL, \
         create the keys you need with `doorstep api-keys create`"
    )]
    NotEmbedded,
    #[error(transparent)]
    Keys(#[from] ApiKeyError),
    #[error("cannot read the tour key {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One key of the tour, in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TourKey {
    pub role: Role,
    pub variable: &'static str,
    pub path: PathBuf,
    /// Made by this run (not found from an earlier one).
    pub created: bool,
}

/// What a quickstart found or made.
#[derive(Debug)]
pub struct Quickstart {
    /// The first admin key's file, when it still exists.
    pub admin_key_file: Option<PathBuf>,
    pub keys: Vec<TourKey>,
}

impl Quickstart {
    /// The lines to paste into a shell (or `eval`): one `export` per key, reading its file.
    pub fn exports(&self) -> String {
        let mut lines = String::new();
        if let Some(path) = &self.admin_key_file {
            lines.push_str(&export("DOORSTEP_ADMIN_KEY", path));
        }
        for key in &self.keys {
            lines.push_str(&export(key.variable, &key.path));
        }
        // `doorstep report` reads its key from DOORSTEP_API_KEY.
        lines.push_str("export DOORSTEP_API_KEY=\"$DOORSTEP_MANAGER_KEY\"\n");
        lines
    }
}

fn export(variable: &str, path: &Path) -> String {
    format!("export {variable}=\"$(cat '{}')\"\n", path.display())
}

/// Makes (or finds again) the tour's keys, and the first admin key if the key store is new.
pub fn quickstart(settings: &Settings) -> Result<Quickstart, QuickstartError> {
    if settings.database.is_postgres() {
        return Err(QuickstartError::NotEmbedded);
    }
    let store = &settings.auth.api_keys_file;
    api_keys::ensure_first_admin_key(store)?;
    let admin_key_file = Some(store.with_file_name(FIRST_ADMIN_KEY_FILE)).filter(|p| p.exists());
    let stored = api_keys::list(store)?;
    let directory = store.with_file_name(TOUR_DIRECTORY);
    let mut keys = Vec::new();
    for (role, variable, name) in TOUR_KEYS {
        let path = directory.join(format!("{}.api-key", role.as_str()));
        let still_stored = match std::fs::read_to_string(&path) {
            Ok(key) => key_id(key.trim()).is_some_and(|id| stored.iter().any(|s| s.id == id)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
            Err(source) => return Err(QuickstartError::Read { path, source }),
        };
        if !still_stored {
            create_directory(&directory)?;
            let created = api_keys::create(store, name, &[role], None)?;
            let mut contents = created.key.expose_secret().as_bytes().to_vec();
            contents.push(b'\n');
            api_keys::write_private_file(&path, &contents)?;
        }
        keys.push(TourKey {
            role,
            variable,
            path,
            created: !still_stored,
        });
    }
    Ok(Quickstart {
        admin_key_file,
        keys,
    })
}

/// The id in a `dsk_<id>_<secret>` key.
fn key_id(key: &str) -> Option<&str> {
    key.strip_prefix("dsk_")?.split_once('_').map(|(id, _)| id)
}

/// The tour's directory, its owner's alone (0700), as the data directory is.
fn create_directory(directory: &Path) -> Result<(), ApiKeyError> {
    if directory.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(directory).map_err(|source| ApiKeyError::Io {
        path: directory.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quickstart_is_for_the_embedded_default_only() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let mut settings = Settings::for_tests(directory.path());
        settings.database =
            crate::settings::DatabaseSettings::new("postgres://doorstep@localhost/doorstep");
        let refused = quickstart(&settings).expect_err("no tour keys on a shared database");
        assert!(matches!(refused, QuickstartError::NotEmbedded), "{refused}");
        assert!(
            !settings.auth.api_keys_file.exists(),
            "nothing is created when refused"
        );
    }

    #[test]
    fn a_key_id_is_read_from_the_key() {
        assert_eq!(key_id("dsk_0123abcd_secret_part"), Some("0123abcd"));
        assert_eq!(key_id("not-a-key"), None);
    }
}
