//! API keys for integrations (the call centre, work-order systems): `dsk_<id>_<secret>`, shown
//! once when created and stored only as an argon2id hash in a JSON file readable by its owner
//! alone. The server notices when the file changes (a key created or revoked) and re-reads it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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

/// One stored key: everything but the secret, which is kept only as a hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredKey {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    #[serde(default)]
    pub contractor_id: Option<String>,
    pub hash: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
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
    let id: String = random_bytes::<8>()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|error| ApiKeyError::Hash(error.to_string()))?
        .to_string();
    let mut file = read_file(path)?;
    file.keys.push(StoredKey {
        id: id.clone(),
        name: name.to_owned(),
        roles: role_names,
        contractor_id: contractor_id.map(str::to_owned),
        hash,
        created_at: chrono::Utc::now(),
    });
    write_file(path, &file)?;
    Ok(CreatedKey {
        key: SecretString::from(format!("{PREFIX}{id}_{secret}")),
        id,
    })
}

/// Every stored key, without secrets.
pub fn list(path: &Path) -> Result<Vec<StoredKey>, ApiKeyError> {
    Ok(read_file(path)?.keys)
}

/// Removes the key `id`; servers stop accepting it when they next see the file change.
pub fn revoke(path: &Path, id: &str) -> Result<(), ApiKeyError> {
    let mut file = read_file(path)?;
    let before = file.keys.len();
    file.keys.retain(|key| key.id != id);
    if file.keys.len() == before {
        return Err(ApiKeyError::UnknownId(id.to_owned()));
    }
    write_file(path, &file)
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
}

#[derive(Default)]
struct Loaded {
    modified: Option<SystemTime>,
    keys: HashMap<String, StoredKey>,
    /// Keys already verified since the file was last read, by a digest of the whole key, so a
    /// busy integration pays for argon2 once, not per call.
    verified: HashMap<[u8; 32], Principal>,
}

impl ApiKeyStore {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            state: Mutex::new(Loaded::default()),
        }
    }

    /// The principal a presented key stands for. With `may_hash` false (the caller's address
    /// has presented too many bad keys), only keys already verified are accepted: a guess costs
    /// no argon2.
    pub async fn verify(&self, presented: &str, may_hash: bool) -> Result<Principal, KeyRejection> {
        let (id, secret) = presented
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .filter(|(id, secret)| !id.is_empty() && !secret.is_empty() && secret.len() <= 128)
            .ok_or(KeyRejection::Malformed)?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let stored = {
            let mut state = self.state.lock().map_err(|_| KeyRejection::Unknown)?;
            self.refresh(&mut state).map_err(KeyRejection::Store)?;
            if let Some(principal) = state.verified.get(&digest) {
                return Ok(principal.clone());
            }
            if !may_hash {
                return Err(KeyRejection::Throttled);
            }
            state.keys.get(id).cloned().ok_or(KeyRejection::Unknown)?
        };
        let secret = secret.to_owned();
        let hash = stored.hash.clone();
        // Argon2 is slow by design: keep it off the async workers.
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(secret.as_bytes(), &hash)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        if !matches {
            return Err(KeyRejection::Mismatch);
        }
        let principal = Principal::new(
            format!("api-key:{}", stored.name),
            &stored.roles,
            stored.contractor_id.as_deref(),
        )
        .map_err(|error| KeyRejection::Store(error.into()))?;
        if let Ok(mut state) = self.state.lock() {
            state.verified.insert(digest, principal.clone());
        }
        Ok(principal)
    }

    fn refresh(&self, state: &mut Loaded) -> Result<(), ApiKeyError> {
        let modified = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata.modified().ok(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(io_error(&self.path)(error)),
        };
        if modified.is_some() && modified == state.modified {
            return Ok(());
        }
        let file = read_file(&self.path)?;
        state.keys = file
            .keys
            .into_iter()
            .map(|key| (key.id.clone(), key))
            .collect();
        state.verified.clear();
        state.modified = modified;
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
        assert!(matches!(
            store.verify(unseen.key.expose_secret(), false).await,
            Err(KeyRejection::Throttled)
        ));
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
