//! `doorstep keys rotate-master`: every resident key is re-wrapped under a new master key
//! generation in one transaction, after which the older generations wrap nothing and are to be
//! destroyed. Once they are, no copy of a forgotten resident's wrapped key (a backup, a
//! PostgreSQL dead row or WAL archive, a SQLite file copied before the erasure) can be opened by
//! anyone: the key that opened it is gone.
//!
//! The order makes every crash safe:
//! 1. the new generation exists before any row names it: with files, it is written (0600) and
//!    flushed, with its directory, first; from settings, the operator has added it there;
//! 2. the re-wrap is one transaction: every row moves to the new generation or none does, and
//!    until the old one is destroyed both open what they wrap;
//! 3. only then are the older generations destroyed (files, with `--destroy-old`) or named for
//!    the operator to remove.
//!
//! It refuses to run while any server holds the database ([`doorstep_store::ServerLease`]): a
//! server wraps new keys under the generation it loaded at start, which this is about to retire.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use doorstep_store::{
    KeyToRewrap, LeaseError, ResidentKeyError, ResidentKeyStore, RewrapError, RewrapRefused,
    ServerLease,
};

use super::crypto::{SealError, SecretKey};
use super::master_keys::{self, KeySource, MasterKeyring};
use super::{VaultSetupError, missing_generation, unwrap_data_key, wrap_data_key};
use crate::backend::{BackendError, OpenedStore};
use crate::settings::Settings;

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// The generation that now wraps every resident key.
    pub generation: u32,
    /// How many keys were re-wrapped.
    pub rewrapped: u64,
    /// The generations that wrap nothing any more: to be destroyed.
    pub retired: Vec<u32>,
    /// Their files, when the keys are kept in files.
    pub retired_files: Vec<PathBuf>,
    /// Whether those files were destroyed (`--destroy-old`).
    pub destroyed: bool,
    /// The file the new generation was written to, when the keys are kept in files.
    pub new_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("cannot open the database")]
    Store(#[from] BackendError),
    #[error(transparent)]
    Keys(#[from] VaultSetupError),
    #[error("there is no master key to rotate from (privacy.master_keys or the key file)")]
    NoMasterKey,
    #[error(
        "the newest master key generation given ({0}) already wraps every resident key: add a \
         new generation to privacy.master_keys (`<generation>:<base64 of 32 random bytes>`, \
         e.g. from `openssl rand -base64 32`) and run this again"
    )]
    NoNewGeneration(u32),
    #[error(transparent)]
    Rewrap(#[from] RewrapError),
    #[error("the resident key store failed")]
    Database(#[from] ResidentKeyError),
    #[error("cannot write, flush or destroy the master key file {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Rotates the master key of the settings' database. See the module's documentation.
pub async fn rotate_master(
    settings: &Settings,
    destroy_old: bool,
) -> Result<RotationReport, RotationError> {
    let sqlite_lease = if settings.database.is_postgres() {
        None
    } else {
        let path = settings
            .database
            .sqlite_path()
            .map_err(BackendError::Settings)?;
        Some(ServerLease::sqlite_exclusive(&path).await?)
    };
    let store = OpenedStore::open(&settings.database).await?;
    let rotated = rotate_on(&store, settings, destroy_old).await;
    store.close().await;
    drop(sqlite_lease);
    rotated
}

async fn rotate_on(
    store: &OpenedStore,
    settings: &Settings,
    destroy_old: bool,
) -> Result<RotationReport, RotationError> {
    let keys = store.resident_keys();
    let mut masters = MasterKeyring::load(&settings.privacy)?;
    let in_use = keys.generations_in_use().await?;
    let Some((newest, _)) = masters.current() else {
        return Err(RotationError::NoMasterKey);
    };
    missing_generation(&masters, &in_use, &settings.privacy.master_key_file)?;
    let (target, new_file) = target_generation(&mut masters, &in_use, newest)?;
    let rewrapped = rewrap_every_key(keys.as_ref(), &masters, target).await?;
    let retired: Vec<u32> = masters
        .generations()
        .filter(|generation| *generation != target)
        .collect();
    let retired_files = retire_files(&masters, target, destroy_old)?;
    tracing::info!(
        generation = target,
        rewrapped,
        ?retired,
        "every resident key is wrapped by the new master key generation"
    );
    Ok(RotationReport {
        generation: target,
        rewrapped,
        retired,
        destroyed: destroy_old && !retired_files.is_empty(),
        retired_files,
        new_file,
    })
}

/// The generation every key moves to, made first when the keys are kept in files (written and
/// flushed before any row names it); from settings, the operator must have added a new one.
fn target_generation(
    masters: &mut MasterKeyring,
    in_use: &[u32],
    newest: u32,
) -> Result<(u32, Option<PathBuf>), RotationError> {
    match masters.source().clone() {
        KeySource::Files { first } => {
            let target = newest + 1;
            let key = SecretKey::generate();
            let path = master_keys::generation_file(&first, target);
            write_key_file(&path, &key)?;
            masters.insert(target, key);
            Ok((target, Some(path)))
        }
        KeySource::Settings => {
            if in_use.iter().any(|generation| *generation >= newest) {
                return Err(RotationError::NoNewGeneration(newest));
            }
            Ok((newest, None))
        }
    }
}

/// Why a key was not re-wrapped (the whole re-wrap is then rolled back).
#[derive(Debug, thiserror::Error)]
pub enum KeyRefusal {
    #[error(
        "the resident key of {reference} does not open with master key generation {generation}"
    )]
    Unopenable { reference: String, generation: u32 },
    #[error("cannot wrap a resident key")]
    Seal(#[from] SealError),
}

/// Opens every key not wrapped by `target` with its own generation and wraps it with `target`,
/// in the store's one transaction.
async fn rewrap_every_key(
    keys: &dyn ResidentKeyStore,
    masters: &MasterKeyring,
    target: u32,
) -> Result<u64, RotationError> {
    let Some(target_key) = masters.get(target).cloned() else {
        return Err(RotationError::NoMasterKey);
    };
    let rewrap = |row: &KeyToRewrap| -> Result<String, RewrapRefused> {
        let unopenable = || KeyRefusal::Unopenable {
            reference: row.reference.clone(),
            generation: row.key.generation,
        };
        let master = masters.get(row.key.generation).ok_or_else(unopenable)?;
        let data_key =
            unwrap_data_key(master, &row.reference, &row.key.wrapped).ok_or_else(unopenable)?;
        let wrapped =
            wrap_data_key(&target_key, &row.reference, &data_key).map_err(KeyRefusal::from)?;
        Ok(wrapped)
    };
    Ok(keys.rewrap_all(target, &rewrap).await?)
}

/// The files of the generations other than `target`, when the keys are kept in files,
/// destroyed when `destroy_old` says so.
fn retire_files(
    masters: &MasterKeyring,
    target: u32,
    destroy_old: bool,
) -> Result<Vec<PathBuf>, RotationError> {
    let KeySource::Files { first } = masters.source() else {
        return Ok(Vec::new());
    };
    let retired_files: Vec<PathBuf> = master_keys::generation_files(first)?
        .into_iter()
        .filter(|(generation, _)| *generation != target)
        .map(|(_, path)| path)
        .collect();
    if destroy_old {
        for path in &retired_files {
            destroy_key_file(path)?;
        }
    }
    Ok(retired_files)
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> RotationError + '_ {
    move |source| RotationError::File {
        path: path.to_owned(),
        source,
    }
}

/// Writes a new generation's key (0600) and flushes it and its directory, so that the key
/// exists on disk before any row is wrapped by it.
fn write_key_file(path: &Path, key: &SecretKey) -> Result<(), RotationError> {
    let mut text = BASE64.encode(key.as_bytes()).into_bytes();
    text.push(b'\n');
    crate::auth::api_keys::write_private_file(path, &text).map_err(VaultSetupError::from)?;
    sync_directory(path)
}

fn sync_directory(path: &Path) -> Result<(), RotationError> {
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(file_error(directory))
}

/// Overwrites a retired key file with zeros, flushes it, and deletes it. On a copy-on-write or
/// flash file system the overwrite may land elsewhere than the old bytes; the deletion is what
/// counts, with backups of the file destroyed by the operator.
fn destroy_key_file(path: &Path) -> Result<(), RotationError> {
    use std::io::Write;
    let length = std::fs::metadata(path).map_err(file_error(path))?.len();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(file_error(path))?;
    let length = usize::try_from(length)
        .map_err(|_| file_error(path)(std::io::Error::other("too large to overwrite")))?;
    let zeros = vec![0_u8; length];
    file.write_all(&zeros).map_err(file_error(path))?;
    file.sync_all().map_err(file_error(path))?;
    drop(file);
    std::fs::remove_file(path).map_err(file_error(path))?;
    sync_directory(path)
}
