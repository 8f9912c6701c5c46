//! The master keys, by generation. Each resident key row records the generation that wraps it
//! (`resident_keys.master_generation`); new keys are wrapped by the newest generation, and
//! rotation (`doorstep keys rotate-master`) re-wraps every row under a newer one, after which
//! the older generations wrap nothing and are destroyed.
//!
//! Keys come from one of two places, never both:
//! - settings (a secret store): `privacy.master_keys`, `"<generation>:<base64>"` entries
//!   separated by commas, and `privacy.master_key`, the single key of installations from before
//!   generations, which is generation 1;
//! - files: generation 1 is `privacy.master_key_file` itself (so an existing installation needs
//!   no change) and generation N > 1 is that path with `.N` appended (`master.key.2`, …). A
//!   generation is destroyed by deleting its file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::ExposeSecret;

use super::VaultSetupError;
use super::crypto::SecretKey;
use crate::settings::PrivacySettings;

/// Where the keys came from, which decides how a rotation adds a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `privacy.master_key` / `privacy.master_keys`: the operator adds a generation there.
    Settings,
    /// Files beside `privacy.master_key_file`: a rotation writes the next one.
    Files { first: PathBuf },
}

/// Every master key generation this process was given.
#[derive(Debug, Clone)]
pub struct MasterKeyring {
    keys: BTreeMap<u32, SecretKey>,
    source: KeySource,
}

impl MasterKeyring {
    /// The keys the settings give, or those found in files (possibly none).
    pub fn load(settings: &PrivacySettings) -> Result<Self, VaultSetupError> {
        if settings.master_key.is_some() || settings.master_keys.is_some() {
            return Self::from_settings(settings);
        }
        Self::from_files(&settings.master_key_file)
    }

    fn from_settings(settings: &PrivacySettings) -> Result<Self, VaultSetupError> {
        let mut keys = BTreeMap::new();
        if let Some(key) = &settings.master_key {
            keys.insert(1, decode_master_key(key.expose_secret())?);
        }
        if let Some(list) = &settings.master_keys {
            for entry in list
                .expose_secret()
                .split([',', '\n', ' '])
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
            {
                let (generation, key) = entry
                    .split_once(':')
                    .ok_or(VaultSetupError::MasterKeysFormat)?;
                let generation =
                    parse_generation(generation.trim()).ok_or(VaultSetupError::MasterKeysFormat)?;
                if keys.insert(generation, decode_master_key(key)?).is_some() {
                    return Err(VaultSetupError::DuplicateGeneration(generation));
                }
            }
        }
        Ok(Self {
            keys,
            source: KeySource::Settings,
        })
    }

    fn from_files(first: &Path) -> Result<Self, VaultSetupError> {
        let mut keys = BTreeMap::new();
        for (generation, path) in generation_files(first)? {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| VaultSetupError::Read { path, source })?;
            keys.insert(generation, decode_master_key(&text)?);
        }
        Ok(Self {
            keys,
            source: KeySource::Files {
                first: first.to_owned(),
            },
        })
    }

    /// A keyring holding one key: the first generation of a new installation.
    pub(super) fn first(key: SecretKey, source: KeySource) -> Self {
        Self {
            keys: BTreeMap::from([(1, key)]),
            source,
        }
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn generations(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// The newest generation, which wraps new resident keys.
    pub fn current(&self) -> Option<(u32, &SecretKey)> {
        self.keys
            .last_key_value()
            .map(|(generation, key)| (*generation, key))
    }

    pub fn get(&self, generation: u32) -> Option<&SecretKey> {
        self.keys.get(&generation)
    }

    pub(super) fn insert(&mut self, generation: u32, key: SecretKey) {
        self.keys.insert(generation, key);
    }

    /// Whether any key of this ring opens `wrapped` (base64, as stored) as `reference`'s key:
    /// what an operator holding every key still kept could recover from a copy of the row.
    pub fn opens(&self, reference: &str, wrapped: &str) -> bool {
        self.keys
            .values()
            .any(|master| super::unwrap_data_key(master, reference, wrapped).is_some())
    }
}

/// The file that holds `generation` when the first generation is `first`.
pub fn generation_file(first: &Path, generation: u32) -> PathBuf {
    if generation == 1 {
        return first.to_owned();
    }
    let mut name = first.as_os_str().to_owned();
    name.push(format!(".{generation}"));
    PathBuf::from(name)
}

/// The generation files that exist beside `first`, by generation.
pub fn generation_files(first: &Path) -> Result<BTreeMap<u32, PathBuf>, VaultSetupError> {
    let directory = first
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(base) = first.file_name().and_then(|name| name.to_str()) else {
        return Ok(BTreeMap::new());
    };
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(BTreeMap::new());
        }
        Err(source) => {
            return Err(VaultSetupError::Read {
                path: directory.to_owned(),
                source,
            });
        }
    };
    let mut files = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|source| VaultSetupError::Read {
            path: directory.to_owned(),
            source,
        })?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let generation = if name == base {
            Some(1)
        } else {
            name.strip_prefix(base)
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(parse_generation)
                .filter(|generation| *generation > 1)
        };
        if let Some(generation) = generation {
            files.insert(generation, generation_file(first, generation));
        }
    }
    Ok(files)
}

fn parse_generation(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|generation| *generation > 0)
}

pub(super) fn decode_master_key(text: &str) -> Result<SecretKey, VaultSetupError> {
    BASE64
        .decode(text.trim().as_bytes())
        .ok()
        .and_then(|bytes| SecretKey::from_bytes(&bytes))
        .ok_or(VaultSetupError::MasterKeyFormat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    const KEY_A: &str = "ZG9vcnN0ZXAgcmVwbGljYXMgc2hhcmUgdGhpcyBrZXk=";
    const KEY_B: &str = "ZG9vcnN0ZXAgdGVzdHMgc2hhcmUgdGhpcyBrZXkgISE=";

    fn settings(master_key: Option<&str>, master_keys: Option<&str>) -> PrivacySettings {
        PrivacySettings {
            master_key: master_key.map(SecretString::from),
            master_keys: master_keys.map(SecretString::from),
            master_key_file: PathBuf::from("/nonexistent/master.key"),
        }
    }

    #[test]
    fn settings_name_generations_and_the_single_key_is_generation_one() {
        let ring = MasterKeyring::load(&settings(Some(KEY_A), Some(&format!("3:{KEY_B}"))))
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(ring.generations().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(ring.current().map(|(generation, _)| generation), Some(3));
        assert_eq!(ring.source(), &KeySource::Settings);
    }

    #[test]
    fn malformed_or_repeated_generations_are_refused() {
        for list in ["2", "x:KEY", "0:KEY", "-1:KEY"] {
            let list = list.replace("KEY", KEY_A);
            assert!(
                matches!(
                    MasterKeyring::load(&settings(None, Some(&list))),
                    Err(VaultSetupError::MasterKeysFormat)
                ),
                "{list}"
            );
        }
        assert!(matches!(
            MasterKeyring::load(&settings(Some(KEY_A), Some(&format!("1:{KEY_B}")))),
            Err(VaultSetupError::DuplicateGeneration(1))
        ));
        assert!(matches!(
            MasterKeyring::load(&settings(None, Some("2:bm90IDMyIGJ5dGVz"))),
            Err(VaultSetupError::MasterKeyFormat)
        ));
    }

    #[test]
    fn generation_files_sit_beside_the_first() {
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let first = directory.path().join("master.key");
        for (name, key) in [
            ("master.key", KEY_A),
            ("master.key.2", KEY_B),
            ("master.key.tmp", KEY_B),
            ("master.key.02x", KEY_B),
            ("other.key.3", KEY_B),
        ] {
            std::fs::write(directory.path().join(name), key)
                .unwrap_or_else(|error| panic!("{error}"));
        }
        let ring = MasterKeyring::load(&PrivacySettings {
            master_key: None,
            master_keys: None,
            master_key_file: first.clone(),
        })
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(ring.generations().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(
            generation_file(&first, 2),
            directory.path().join("master.key.2")
        );
    }
}
