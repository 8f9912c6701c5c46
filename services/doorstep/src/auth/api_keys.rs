//! API keys for integrations (the call centre, work-order systems): `dsk_<id>_<secret>`, shown
//! once when created and stored only as hashes in a JSON file readable by its owner alone. The
//! server notices when the file changes (a key created or revoked) and re-reads it.
//!
//! Each key is stored twice over: an argon2id hash (what older builds check) and a SHA-256
//! fingerprint of the whole key, which this build checks. The secret is 32 bytes from the
//! operating system's generator, so a fast hash is as safe as a slow one: argon2's cost defends
//! guessable passwords, and 2^256 candidates are not guessable at any cost per guess. A keyed
//! hash (a per-install secret) would add nothing for the same reason. The fingerprint is what
//! lets the server recognise a valid key without argon2, so a guessing flood from an address,
//! which stops argon2 from running for it, never locks out a key in use behind that address,
//! whether or not this process has seen the key before.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{CredentialError, Principal, Role};

const PREFIX: &str = "dsk_";
/// The file, beside the key store, that holds the first admin key in clear.
pub const FIRST_ADMIN_KEY_FILE: &str = "admin.api-key";

/// One stored key: everything but the secret, which is kept only as hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    #[serde(default)]
    pub contractor_id: Option<String>,
    /// Argon2id of the secret.
    pub hash: String,
    /// Hex SHA-256 of the whole key (see the module comment). Keys created before it existed
    /// have none and are checked with argon2 alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// SHA-256 of the whole presented key.
fn fingerprint(presented: &str) -> [u8; 32] {
    Sha256::digest(presented.as_bytes()).into()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether the stored hex fingerprint is `digest`, in time that does not depend on where they
/// differ.
fn fingerprint_matches(stored: &str, digest: &[u8; 32]) -> bool {
    super::same_secret(stored, &to_hex(digest))
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("cannot read or write the API key file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the API key file {path} is not valid JSON")]
    Format {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot hash the API key: {0}")]
    Hash(String),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("no API key has the id {0}")]
    UnknownId(String),
}

/// Why a presented key was refused; never shown to the caller in detail.
#[derive(Debug, thiserror::Error)]
pub enum KeyRejection {
    #[error("the key is not in the dsk_<id>_<secret> form")]
    Malformed,
    #[error("no key has this id")]
    Unknown,
    #[error("the secret does not match")]
    Mismatch,
    #[error("the key store cannot be read")]
    Store(#[source] ApiKeyError),
    #[error("too many bad keys from this address; a key not seen before is not checked")]
    Throttled,
}

/// A key just created: the only time its secret exists outside the caller's hands.
pub struct CreatedKey {
    pub id: String,
    pub key: SecretString,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ApiKeyError + '_ {
    move |source| ApiKeyError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read_file(path: &Path) -> Result<KeyFile, ApiKeyError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ApiKeyError::Format {
            path: path.to_owned(),
            source,
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(KeyFile::default()),
        Err(error) => Err(io_error(path)(error)),
    }
}

/// Writes `contents` to `path` readable and writable by the owner alone, replacing any earlier
/// file in one rename so a reader never sees half of it.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), ApiKeyError> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary).map_err(io_error(&temporary))?;
    file.write_all(contents).map_err(io_error(&temporary))?;
    file.sync_all().map_err(io_error(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io_error(path))
}

fn write_file(path: &Path, keys: &KeyFile) -> Result<(), ApiKeyError> {
    let json = serde_json::to_vec_pretty(keys).map_err(|source| ApiKeyError::Format {
        path: path.to_owned(),
        source,
    })?;
    write_private_file(path, &json)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0_u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Creates a key named `name` with `roles` (and the contractor a contractor key is bound to),
/// stores its hash in the file at `path`, and returns the key itself.
pub fn create(
    path: &Path,
    name: &str,
    roles: &[Role],
    contractor_id: Option<&str>,
) -> Result<CreatedKey, ApiKeyError> {
    let role_names: Vec<String> = roles.iter().map(|role| role.as_str().to_owned()).collect();
    // Refuse now what would be refused at every use.
    Principal::new(format!("api-key:{name}"), &role_names, contractor_id)?;
    let id = to_hex(&random_bytes::<8>());
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let key = format!("{PREFIX}{id}_{secret}");
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|error| ApiKeyError::Hash(error.to_string()))?
        .to_string();
    let stored = StoredKey {
        id: id.clone(),
        name: name.to_owned(),
        roles: role_names,
        contractor_id: contractor_id.map(str::to_owned),
        hash,
        fingerprint: Some(to_hex(&fingerprint(&key))),
        created_at: chrono::Utc::now(),
    };
    change_file(path, |file| {
        file.keys.push(stored);
        Ok(true)
    })?;
    Ok(CreatedKey {
        key: SecretString::from(key),
        id,
    })
}

/// Every stored key, without secrets.
pub fn list(path: &Path) -> Result<Vec<StoredKey>, ApiKeyError> {
    Ok(read_file(path)?.keys)
}

/// Removes the key `id`; servers stop accepting it when they next see the file change.
pub fn revoke(path: &Path, id: &str) -> Result<(), ApiKeyError> {
    change_file(path, |file| {
        let before = file.keys.len();
        file.keys.retain(|key| key.id != id);
        if file.keys.len() == before {
            return Err(ApiKeyError::UnknownId(id.to_owned()));
        }
        Ok(true)
    })
}

/// Reads the key file, lets `change` edit it, and writes it back when `change` says it changed
/// it, all under an exclusive lock on a file beside it: the command line and running servers
/// (which add fingerprints to keys that lack them) write the same file, and without the lock one
/// could write back a copy read before the other's change.
fn change_file(
    path: &Path,
    change: impl FnOnce(&mut KeyFile) -> Result<bool, ApiKeyError>,
) -> Result<(), ApiKeyError> {
    let lock_path = path.with_extension("lock");
    if let Some(parent) = lock_path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let lock = options.open(&lock_path).map_err(io_error(&lock_path))?;
    lock.lock().map_err(io_error(&lock_path))?;
    let mut file = read_file(path)?;
    let changed = change(&mut file)?;
    let written = if changed {
        write_file(path, &file)
    } else {
        Ok(())
    };
    // Closing the lock file releases the lock.
    drop(lock);
    written
}

/// Adds `fingerprint` to the key `id` if its record is still `hash` without a fingerprint: a key
/// created before fingerprints existed, just verified with argon2.
fn record_fingerprint(
    path: &Path,
    id: &str,
    hash: &str,
    fingerprint: String,
) -> Result<(), ApiKeyError> {
    change_file(path, |file| {
        let record = file
            .keys
            .iter_mut()
            .find(|key| key.id == id && key.hash == hash && key.fingerprint.is_none());
        Ok(record
            .map(|record| record.fingerprint = Some(fingerprint))
            .is_some())
    })
}

/// On the very first start (no key file yet), creates an admin key and writes it, in clear and
/// readable by the owner alone, to [`FIRST_ADMIN_KEY_FILE`] beside the key file. Returns where,
/// so the server can say so; `None` when keys already exist.
pub fn ensure_first_admin_key(path: &Path) -> Result<Option<PathBuf>, ApiKeyError> {
    if path.exists() {
        return Ok(None);
    }
    let created = create(path, "first-admin", &[Role::Admin], None)?;
    let key_path = path.with_file_name(FIRST_ADMIN_KEY_FILE);
    let mut contents = created.key.expose_secret().as_bytes().to_vec();
    contents.push(b'\n');
    write_private_file(&key_path, &contents)?;
    Ok(Some(key_path))
}

/// The server's view of the key file, re-read whenever the file changes.
pub struct ApiKeyStore {
    path: PathBuf,
    state: Mutex<Loaded>,
    /// Argon2 verifications run, for the tests that hold guessing to none.
    argon2_runs: AtomicU64,
}

/// Which version of the key file was read: its modification time alone is too coarse (the
/// kernel stamps it from a clock that ticks every few milliseconds), but every write replaces the
/// file by a rename, so a new version is also a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileVersion {
    modified: Option<SystemTime>,
    inode: u64,
    len: u64,
}

impl FileVersion {
    fn of(metadata: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Self {
            modified: metadata.modified().ok(),
            inode,
            len: metadata.len(),
        }
    }
}

#[derive(Default)]
struct Loaded {
    version: Option<FileVersion>,
    keys: HashMap<String, StoredKey>,
    /// Keys already verified, by the digest of the whole key, with the record each matched, so
    /// a busy integration pays for a check once, not per call. A re-read of the file keeps the
    /// entries whose record is unchanged: a key created or revoked elsewhere in the file does
    /// not make keys in use strangers again.
    verified: HashMap<[u8; 32], (StoredKey, Principal)>,
}

/// What the presented key's record says about it, decided under the lock.
enum Candidate {
    Verified(Principal),
    /// The fingerprint matched: the key is valid without argon2.
    Recognised(StoredKey),
    /// A record without a fingerprint, to be checked with argon2.
    Legacy(StoredKey),
}

impl ApiKeyStore {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            state: Mutex::new(Loaded::default()),
            argon2_runs: AtomicU64::new(0),
        }
    }

    /// How many argon2 verifications this store has run.
    pub fn argon2_runs(&self) -> u64 {
        self.argon2_runs.load(Ordering::Relaxed)
    }

    /// The principal a presented key stands for. With `may_hash` false (the caller's address
    /// has presented too many bad keys), a key is accepted only if it is recognised without
    /// argon2 (verified before, or matching its record's fingerprint) and anything else is
    /// `Throttled`: a guess costs no argon2 and learns nothing.
    pub async fn verify(&self, presented: &str, may_hash: bool) -> Result<Principal, KeyRejection> {
        let (id, secret) = presented
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .filter(|(id, secret)| !id.is_empty() && !secret.is_empty() && secret.len() <= 128)
            .ok_or(KeyRejection::Malformed)?;
        let digest = fingerprint(presented);
        let candidate = {
            let mut state = self.state.lock().map_err(|_| KeyRejection::Unknown)?;
            self.refresh(&mut state).map_err(KeyRejection::Store)?;
            if let Some((_, principal)) = state.verified.get(&digest) {
                Candidate::Verified(principal.clone())
            } else {
                match state.keys.get(id) {
                    Some(stored) => match &stored.fingerprint {
                        Some(expected) if fingerprint_matches(expected, &digest) => {
                            Candidate::Recognised(stored.clone())
                        }
                        Some(_) if may_hash => return Err(KeyRejection::Mismatch),
                        None if may_hash => Candidate::Legacy(stored.clone()),
                        _ => return Err(KeyRejection::Throttled),
                    },
                    None if may_hash => return Err(KeyRejection::Unknown),
                    None => return Err(KeyRejection::Throttled),
                }
            }
        };
        let stored = match candidate {
            Candidate::Verified(principal) => return Ok(principal),
            Candidate::Recognised(stored) => stored,
            Candidate::Legacy(stored) => {
                if !self.argon2_matches(secret, &stored.hash).await {
                    return Err(KeyRejection::Mismatch);
                }
                self.upgrade(&stored, &digest).await;
                stored
            }
        };
        let principal = Principal::new(
            format!("api-key:{}", stored.name),
            &stored.roles,
            stored.contractor_id.as_deref(),
        )
        .map_err(|error| KeyRejection::Store(error.into()))?;
        if let Ok(mut state) = self.state.lock()
            // A key revoked while it was being checked is not remembered as valid.
            && state.keys.get(&stored.id) == Some(&stored)
        {
            state.verified.insert(digest, (stored, principal.clone()));
        }
        Ok(principal)
    }

    /// Stores the fingerprint of a key that had none, now that it has been verified, so that
    /// this and every later process recognise it without argon2. A file the server cannot write
    /// (mounted read-only) leaves the key as it was: checked with argon2 where that is allowed.
    async fn upgrade(&self, stored: &StoredKey, digest: &[u8; 32]) {
        let path = self.path.clone();
        let id = stored.id.clone();
        let hash = stored.hash.clone();
        let fingerprint = to_hex(digest);
        let recorded =
            tokio::task::spawn_blocking(move || record_fingerprint(&path, &id, &hash, fingerprint))
                .await;
        match recorded {
            Ok(Ok(())) => tracing::info!(
                key_id = stored.id,
                "an API key without a fingerprint was verified; its fingerprint is now stored"
            ),
            Ok(Err(error)) => tracing::warn!(
                key_id = stored.id,
                error = %error,
                "cannot store the fingerprint of a verified API key"
            ),
            Err(error) => tracing::warn!(%error, "storing an API key's fingerprint failed"),
        }
    }

    async fn argon2_matches(&self, secret: &str, hash: &str) -> bool {
        self.argon2_runs.fetch_add(1, Ordering::Relaxed);
        let secret = secret.to_owned();
        let hash = hash.to_owned();
        // Argon2 is slow by design: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(secret.as_bytes(), &hash)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false)
    }

    fn refresh(&self, state: &mut Loaded) -> Result<(), ApiKeyError> {
        let version = match std::fs::metadata(&self.path) {
            Ok(metadata) => Some(FileVersion::of(&metadata)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(io_error(&self.path)(error)),
        };
        if version.is_some() && version == state.version {
            return Ok(());
        }
        let file = read_file(&self.path)?;
        state.keys = file
            .keys
            .into_iter()
            .map(|key| (key.id.clone(), key))
            .collect();
        let Loaded { keys, verified, .. } = &mut *state;
        verified.retain(|_, (record, _)| keys.get(&record.id) == Some(&*record));
        state.version = version;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_created_key_verifies_and_a_revoked_or_altered_one_does_not() {
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let path = directory.path().join("api-keys.json");
        let created = create(&path, "call-centre", &[Role::Intake], None)
            .unwrap_or_else(|error| panic!("{error}"));
        let store = ApiKeyStore::new(path.clone());
        let key = created.key.expose_secret().to_owned();
        let principal = store
            .verify(&key, true)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(principal.subject, "api-key:call-centre");
        assert!(principal.has_any(&[Role::Intake]));
        assert!(
            store.verify(&key, false).await.is_ok(),
            "a key already verified needs no hashing"
        );
        let unseen = create(&path, "work-orders", &[Role::Intake], None)
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(
            store
                .verify(unseen.key.expose_secret(), false)
                .await
                .is_ok(),
            "a valid key is recognised by its fingerprint while its address is throttled"
        );
        assert!(matches!(
            store
                .verify(&format!("dsk_{}_not-the-secret", unseen.id), false)
                .await,
            Err(KeyRejection::Throttled)
        ));
        assert!(matches!(
            store.verify("dsk_0000000000000000_guess", false).await,
            Err(KeyRejection::Throttled)
        ));
        assert!(matches!(
            store
                .verify(&format!("dsk_{}_not-the-secret", unseen.id), true)
                .await,
            Err(KeyRejection::Mismatch)
        ));
        assert_eq!(
            store.argon2_runs(),
            0,
            "keys with a fingerprint never need argon2"
        );
        assert!(store.verify(&format!("{key}x"), true).await.is_err());
        assert!(store.verify("dsk_nothing_here", true).await.is_err());
        assert!(store.verify("Bearer whatever", true).await.is_err());
        let stored = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{error}"));
        assert!(!stored.contains(key.split('_').next_back().unwrap_or("?")));

        // The modification time has a granularity; make sure the revocation is seen as a change.
        std::thread::sleep(std::time::Duration::from_millis(20));
        revoke(&path, &created.id).unwrap_or_else(|error| panic!("{error}"));
        assert!(store.verify(&key, true).await.is_err());
    }

    /// A key file written before fingerprints existed: its keys are checked with argon2 when
    /// the address may hash, and refused unchecked while it may not, until verified once; then
    /// the fingerprint is stored, and a new process (a restart) recognises the key without
    /// argon2.
    #[tokio::test]
    async fn keys_without_a_fingerprint_get_one_when_first_verified() {
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let path = directory.path().join("api-keys.json");
        let created = create(&path, "call-centre", &[Role::Intake], None)
            .unwrap_or_else(|error| panic!("{error}"));
        let mut file = read_file(&path).unwrap_or_else(|error| panic!("{error}"));
        for key in &mut file.keys {
            key.fingerprint = None;
        }
        write_file(&path, &file).unwrap_or_else(|error| panic!("{error}"));
        let store = ApiKeyStore::new(path.clone());
        let key = created.key.expose_secret().to_owned();
        assert!(matches!(
            store.verify(&key, false).await,
            Err(KeyRejection::Throttled)
        ));
        assert_eq!(store.argon2_runs(), 0);
        assert!(store.verify(&key, true).await.is_ok());
        assert_eq!(store.argon2_runs(), 1);
        assert!(store.verify(&key, false).await.is_ok(), "verified before");

        // Another key created in the file does not make the verified key a stranger again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        create(&path, "work-orders", &[Role::Intake], None)
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(store.verify(&key, false).await.is_ok());
        assert_eq!(store.argon2_runs(), 1);

        let stored = list(&path).unwrap_or_else(|error| panic!("{error}"));
        assert!(
            stored
                .iter()
                .find(|stored| stored.id == created.id)
                .is_some_and(|stored| stored.fingerprint.is_some()),
            "the verified key's fingerprint is stored"
        );
        assert_eq!(stored.len(), 2, "the other key is kept");
        let restarted = ApiKeyStore::new(path.clone());
        assert!(restarted.verify(&key, false).await.is_ok());
        assert_eq!(restarted.argon2_runs(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn the_first_admin_key_is_written_once_for_the_owner_alone() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let path = directory.path().join("api-keys.json");
        let written = ensure_first_admin_key(&path)
            .unwrap_or_else(|error| panic!("{error}"))
            .unwrap_or_else(|| panic!("a first key is written"));
        for file in [&written, &path] {
            let mode = std::fs::metadata(file)
                .unwrap_or_else(|error| panic!("{error}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
        assert!(
            ensure_first_admin_key(&path)
                .unwrap_or_else(|error| panic!("{error}"))
                .is_none()
        );
    }
}
