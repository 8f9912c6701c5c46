//! Residents' personal data at rest: a resident's name, phone, email and address, and the
//! reasonable adjustments they asked for, are sealed in
//! the `ComplaintReceived` event with a data key of their own, and each data key is stored
//! wrapped by the master key in the event store's database. Forgetting a resident deletes their
//! key: the events stay, and what it sealed reads as erased from then on.
//!
//! Only `GetComplaint` opens sealed data. The read models never see it (the stored payload
//! holds the fields blank), and the event log delivers every `ComplaintReceived` with them
//! withheld, so an auditor's copy of the log holds no contact details.
//!
//! The master key comes from `privacy.master_key` / `privacy.master_keys` (base64, e.g. from
//! the environment or a KMS that injects it) or from `privacy.master_key_file`, which the first
//! start creates (0600). It has generations ([`master_keys`]); `doorstep keys rotate-master`
//! ([`rotation`]) re-wraps every resident key under a new one, so that the old one can be
//! destroyed and with it every copy (backups, PostgreSQL's dead rows and WAL archives) of the
//! keys of residents forgotten before.

pub mod crypto;
pub mod master_keys;
pub mod rotation;

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use doorstep_api::v1;
use doorstep_commands::StoredEvent;
use doorstep_domain::complaint::Event;
use doorstep_domain::input::ResidentReference;
use doorstep_store::{
    AppendOutcome, ExpectedVersion, LeaseError, NewEvent, NewResidentKey, ResidentKeyError,
    ResidentKeyStore, ServerLease, StoreError, StreamId,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::settings::PrivacySettings;
use crypto::{SealError, SecretKey};
use master_keys::{KeySource, MasterKeyring};

/// What replaces a name or an address that was erased.
pub const ERASED: &str = "[erased]";

/// The personal fields of a complaint, as sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalData {
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: String,
    /// Reasonable adjustments can be health information ("profoundly deaf, needs BSL"), special
    /// category data, so they are sealed too. Absent from what was sealed before they were
    /// (their plain text then stands in the payload, as it does in unsealed events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasonable_adjustments: Option<String>,
}

/// What a read finds of a complaint's personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Personal {
    /// Logged before sealing, and not forgotten: the plain fields in the event stand.
    Plain,
    Opened(PersonalData),
    /// The resident was forgotten.
    Erased,
}

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("the resident key store failed")]
    Database(#[from] ResidentKeyError),
    #[error("a stored resident key does not open with the master key")]
    WrongMasterKey,
    #[error(
        "a stored resident key is wrapped by master key generation {0}, which this server was not given"
    )]
    UnknownGeneration(u32),
    #[error("cannot seal the personal data")]
    Seal(#[from] SealError),
    #[error("cannot encode the personal data")]
    Encode(#[from] serde_json::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum VaultSetupError {
    #[error("a master key is not base64 of 32 bytes")]
    MasterKeyFormat,
    #[error(
        "privacy.master_keys must be `<generation>:<base64 key>` entries (generation 1 or more) \
         separated by commas"
    )]
    MasterKeysFormat,
    #[error("master key generation {0} is given twice")]
    DuplicateGeneration(u32),
    #[error(
        "resident keys are wrapped by master key generation {missing}, which is not among those \
         given ({given}); restore it (privacy.master_keys, or the file {file}), or the residents' \
         data it wraps cannot be read"
    )]
    MissingGeneration {
        missing: u32,
        given: String,
        file: std::path::PathBuf,
    },
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(
        "resident keys exist but the master key file {0} does not: restore it or set \
         privacy.master_keys; a new master key would make every resident's data unreadable"
    )]
    MissingMasterKey(std::path::PathBuf),
    #[error(
        "on PostgreSQL every replica must use the same master key: set privacy.master_key \
         (DOORSTEP__PRIVACY__MASTER_KEY, base64 of 32 random bytes, e.g. `openssl rand -base64 \
         32`) or provide the file {0}; Doorstep does not make one up on a shared database"
    )]
    MasterKeyRequired(std::path::PathBuf),
    #[error("cannot read or write the master key file")]
    File(#[from] crate::auth::api_keys::ApiKeyError),
    #[error("cannot read the master key file {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the resident key store failed")]
    Database(#[from] ResidentKeyError),
}

fn associated(purpose: &str, reference: &str) -> Vec<u8> {
    format!("doorstep {purpose} v1\0{reference}").into_bytes()
}

/// Opens a stored (base64) wrapped data key with one master key.
pub(crate) fn unwrap_data_key(
    master: &SecretKey,
    reference: &str,
    wrapped: &str,
) -> Option<SecretKey> {
    BASE64
        .decode(wrapped.as_bytes())
        .ok()
        .and_then(|bytes| {
            master
                .open(&bytes, &associated("resident key", reference))
                .ok()
        })
        .and_then(|bytes| SecretKey::from_bytes(&bytes))
}

/// Wraps a data key with a master key, as stored (base64).
pub(crate) fn wrap_data_key(
    master: &SecretKey,
    reference: &str,
    key: &SecretKey,
) -> Result<String, SealError> {
    let wrapped = master.seal(key.as_bytes(), &associated("resident key", reference))?;
    Ok(BASE64.encode(wrapped))
}

/// Seals and opens residents' personal data.
pub struct ResidentVault {
    masters: MasterKeyring,
    /// The newest generation, which wraps new keys.
    generation: u32,
    master: SecretKey,
    keys: Arc<dyn ResidentKeyStore>,
    /// Held while the server runs, so that no master key rotation runs beside it.
    _lease: ServerLease,
}

impl ResidentVault {
    /// The vault with the master keys the settings name, creating the key file on the first
    /// start of an installation that has sealed nothing yet. Refuses when a stored key is
    /// wrapped by a generation it was not given, or while a master key rotation runs.
    pub async fn load(
        settings: &PrivacySettings,
        keys: Arc<dyn ResidentKeyStore>,
    ) -> Result<Self, VaultSetupError> {
        let lease = keys.server_lease().await?;
        let mut masters = MasterKeyring::load(settings)?;
        if masters.is_empty() {
            masters = first_master_key(&settings.master_key_file, keys.as_ref()).await?;
        }
        check_generations(&masters, keys.as_ref(), &settings.master_key_file).await?;
        let Some((generation, master)) = masters.current() else {
            return Err(VaultSetupError::MissingMasterKey(
                settings.master_key_file.clone(),
            ));
        };
        let master = master.clone();
        Ok(Self {
            masters,
            generation,
            master,
            keys,
            _lease: lease,
        })
    }

    /// The resident's stored key, opened, if they have one.
    async fn data_key(&self, reference: &str) -> Result<Option<SecretKey>, PrivacyError> {
        let Some(wrapped) = self.keys.wrapped_key(reference).await? else {
            return Ok(None);
        };
        let master = self
            .masters
            .get(wrapped.generation)
            .ok_or(PrivacyError::UnknownGeneration(wrapped.generation))?;
        let key = unwrap_data_key(master, reference, &wrapped.wrapped)
            .ok_or(PrivacyError::WrongMasterKey)?;
        Ok(Some(key))
    }

    /// Seals a decided event under a key made for it, for intake's first attempt, which assumes
    /// the resident is new (most are): the key is stored with the events by
    /// [`ResidentVault::append_with_new_key`], in the same commit on SQLite. If the resident has
    /// a key already, nothing is stored, and the event is sealed again under theirs
    /// ([`ResidentVault::seal_under_stored_key`]). An event without personal data is stored as
    /// it is, and comes with no key.
    pub fn seal_under_new_key(
        &self,
        mut event: Event,
    ) -> Result<(Sealable, Option<NewResidentKey>), PrivacyError> {
        let Some((personal, reference)) = take_personal(&mut event) else {
            return Ok((Sealable::Plain(event), None));
        };
        let key = SecretKey::generate();
        let new_key = NewResidentKey {
            reference: reference.as_str().to_owned(),
            wrapped: wrap_data_key(&self.master, reference.as_str(), &key)?,
            generation: self.generation,
        };
        Ok((sealed(event, &personal, &reference, &key)?, Some(new_key)))
    }

    /// Seals a decided event under the resident's stored key; `None` when they have none (it
    /// was destroyed since the store said it existed: the caller makes a new one).
    pub async fn seal_under_stored_key(
        &self,
        mut event: Event,
    ) -> Result<Option<Sealable>, PrivacyError> {
        let Some((personal, reference)) = take_personal(&mut event) else {
            return Ok(Some(Sealable::Plain(event)));
        };
        let Some(key) = self.data_key(reference.as_str()).await? else {
            return Ok(None);
        };
        Ok(Some(sealed(event, &personal, &reference, &key)?))
    }

    /// Stores `key` with `events`, sealed under it by [`ResidentVault::seal_under_new_key`]:
    /// [`StoreError::ResidentHasKey`] when the resident has a key already.
    pub async fn append_with_new_key(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        key: NewResidentKey,
    ) -> Result<AppendOutcome, StoreError> {
        self.keys
            .append_with_new_key(stream, expected, events, key)
            .await
    }

    /// The personal data of a stored `ComplaintReceived` payload, as a read may show it.
    pub async fn open(&self, payload: &Value) -> Result<Personal, PrivacyError> {
        let Some(reference) = resident_reference(payload) else {
            return Ok(Personal::Erased);
        };
        let sealed = payload
            .get("personal_data")
            .and_then(|data| data.get("sealed"))
            .and_then(Value::as_str);
        let Some(sealed) = sealed else {
            return Ok(if self.keys.is_forgotten(reference).await? {
                Personal::Erased
            } else {
                Personal::Plain
            });
        };
        let Some(key) = self.data_key(reference).await? else {
            return Ok(Personal::Erased);
        };
        // A key made after the resident was forgotten (a later complaint) does not open what
        // the destroyed key sealed: that too is erased.
        let opened = BASE64
            .decode(sealed.as_bytes())
            .ok()
            .and_then(|bytes| {
                key.open(&bytes, &associated("personal data", reference))
                    .ok()
            })
            .and_then(|plain| serde_json::from_slice::<PersonalData>(&plain).ok());
        Ok(opened.map_or(Personal::Erased, Personal::Opened))
    }

    /// Destroys the resident's key. Returns whether there was one.
    pub async fn forget(&self, reference: &str) -> Result<bool, PrivacyError> {
        Ok(self.keys.forget(reference).await?)
    }
}

/// `event` with its personal data (taken out of it) sealed under `key`.
fn sealed(
    event: Event,
    personal: &PersonalData,
    reference: &ResidentReference,
    key: &SecretKey,
) -> Result<Sealable, PrivacyError> {
    let sealed = key.seal(
        &serde_json::to_vec(personal)?,
        &associated("personal data", reference.as_str()),
    )?;
    Ok(Sealable::Sealed(SealedIntake {
        event,
        sealed: BASE64.encode(sealed),
    }))
}

/// A decided event as it is stored: sealed when it holds personal data.
pub enum Sealable {
    Sealed(SealedIntake),
    Plain(Event),
}

/// A `ComplaintReceived` whose personal fields are blank and held, encrypted, beside it: stored
/// as the event's payload with `personal_data: {"sealed": <base64>}` (schema version 3).
pub struct SealedIntake {
    event: Event,
    sealed: String,
}

impl StoredEvent for Sealable {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Sealed(intake) => intake.event.event_type(),
            Self::Plain(event) => event.event_type(),
        }
    }

    fn schema_version(&self) -> u32 {
        match self {
            Self::Sealed(intake) => intake.event.schema_version(),
            Self::Plain(event) => event.schema_version(),
        }
    }

    fn to_payload(&self) -> Value {
        match self {
            Self::Sealed(intake) => {
                let mut payload = intake.event.to_payload();
                if let Some(object) = payload.as_object_mut() {
                    object.insert(
                        "personal_data".to_owned(),
                        serde_json::json!({ "sealed": intake.sealed }),
                    );
                }
                payload
            }
            Self::Plain(event) => event.to_payload(),
        }
    }
}

/// Takes the personal fields out of a `ComplaintReceived`, leaving them blank: what was taken,
/// and whose it is. Any other event holds none.
fn take_personal(event: &mut Event) -> Option<(PersonalData, ResidentReference)> {
    let Event::ComplaintReceived {
        resident,
        property,
        reasonable_adjustments,
        ..
    } = event
    else {
        return None;
    };
    let personal = PersonalData {
        name: std::mem::take(&mut resident.name).to_string(),
        phone: resident.phone.take().map(|phone| phone.as_str().to_owned()),
        email: resident.email.take().map(|email| email.as_str().to_owned()),
        address: std::mem::take(&mut property.address).to_string(),
        // Sealed even when empty, as stored events always have been.
        reasonable_adjustments: Some(std::mem::take(reasonable_adjustments).to_string()),
    };
    Some((personal, resident.reference.clone()))
}

/// Makes generation 1 in a file, for an installation that has no master key and no resident key.
async fn first_master_key(
    path: &Path,
    keys: &dyn ResidentKeyStore,
) -> Result<MasterKeyring, VaultSetupError> {
    if keys.key_count().await? > 0 {
        return Err(VaultSetupError::MissingMasterKey(path.to_owned()));
    }
    // Replicas that each made a key of their own would seal residents' data under keys the
    // others cannot open; on a shared database the operator provides the one key.
    if keys.shared_by_replicas() {
        return Err(VaultSetupError::MasterKeyRequired(path.to_owned()));
    }
    let key = SecretKey::generate();
    let mut text = BASE64.encode(key.as_bytes()).into_bytes();
    text.push(b'\n');
    crate::auth::api_keys::write_private_file(path, &text)?;
    tracing::warn!(
        path = %path.display(),
        "created the master key that protects residents' personal data; back it up apart \
         from the database, or move it to a secret store and set privacy.master_keys"
    );
    Ok(MasterKeyring::first(
        key,
        KeySource::Files {
            first: path.to_owned(),
        },
    ))
}

/// Every generation that wraps a stored key must be in the ring: a server missing one would
/// fail every read of those residents' complaints.
async fn check_generations(
    masters: &MasterKeyring,
    keys: &dyn ResidentKeyStore,
    file: &Path,
) -> Result<(), VaultSetupError> {
    missing_generation(masters, &keys.generations_in_use().await?, file)
}

/// Refuses when a generation in use is not in the ring, naming the file it would be kept in.
fn missing_generation(
    masters: &MasterKeyring,
    in_use: &[u32],
    file: &Path,
) -> Result<(), VaultSetupError> {
    match in_use
        .iter()
        .find(|generation| masters.get(**generation).is_none())
    {
        None => Ok(()),
        Some(&missing) => Err(VaultSetupError::MissingGeneration {
            missing,
            given: masters
                .generations()
                .map(|generation| generation.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            file: master_keys::generation_file(file, missing),
        }),
    }
}

fn resident_reference(payload: &Value) -> Option<&str> {
    payload
        .get("resident")
        .and_then(|resident| resident.get("reference"))
        .and_then(Value::as_str)
}

/// Takes the personal fields out of a `ComplaintReceived` payload, leaving them blank.
fn take_personal_data(payload: &mut Value) -> PersonalData {
    let mut take_text = |pointer: &str, blank: Value| -> Option<String> {
        let slot = payload.pointer_mut(pointer)?;
        let value = std::mem::replace(slot, blank);
        value.as_str().map(str::to_owned)
    };
    PersonalData {
        // A payload without the field (not an intake written by Doorstep) has nothing to take.
        name: take_text("/resident/name", Value::from("")).unwrap_or_default(),
        phone: take_text("/resident/phone", Value::Null),
        email: take_text("/resident/email", Value::Null),
        address: take_text("/property/address", Value::from("")).unwrap_or_default(),
        reasonable_adjustments: take_text("/reasonable_adjustments", Value::from("")),
    }
}

/// The event log's copy of a `ComplaintReceived` payload: personal fields withheld, sealed or
/// not, so no reader of the log (auditors, followers) holds contact details.
pub fn withhold(event_type: &str, payload: &mut Value) {
    if event_type != "ComplaintReceived" {
        return;
    }
    let _ = take_personal_data(payload);
    if let Some(object) = payload.as_object_mut() {
        object.remove("personal_data");
        object.insert("personal_data_withheld".to_owned(), Value::Bool(true));
    }
}

/// Puts what the vault found into a complaint as the API shows it.
pub fn show(view: &mut v1::Complaint, personal: Personal) {
    match personal {
        Personal::Plain => {}
        Personal::Opened(data) => {
            if let Some(resident) = view.resident.as_mut() {
                resident.name = data.name;
                // Phone and email are optional; none given shows empty.
                resident.phone = data.phone.unwrap_or_default();
                resident.email = data.email.unwrap_or_default();
            }
            if let Some(property) = view.property.as_mut() {
                property.address = data.address;
            }
            if let Some(adjustments) = data.reasonable_adjustments {
                view.reasonable_adjustments = adjustments;
            }
        }
        Personal::Erased => {
            if let Some(resident) = view.resident.as_mut() {
                resident.name = ERASED.to_owned();
                resident.phone.clear();
                resident.email.clear();
            }
            if let Some(property) = view.property.as_mut() {
                property.address = ERASED.to_owned();
            }
            view.reasonable_adjustments.clear();
            view.personal_data_erased = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intake() -> Value {
        serde_json::json!({
            "resident": {"reference": "T-1", "name": "Ada Resident", "phone": "07700 900123",
                         "email": "ada@example.org"},
            "property": {"uprn": "100", "address": "1 Example Road"},
            "description": "gate",
            "reasonable_adjustments": "Profoundly deaf, needs BSL"
        })
    }

    #[test]
    fn the_event_log_copy_withholds_every_personal_field() {
        let mut payload = intake();
        withhold("ComplaintReceived", &mut payload);
        let text = payload.to_string();
        for personal in ["Ada", "07700", "ada@", "Example Road", "BSL"] {
            assert!(!text.contains(personal), "{text}");
        }
        assert_eq!(payload["resident"]["reference"], "T-1");
        assert_eq!(payload["description"], "gate");
        let mut note = serde_json::json!({"text": "Ada called"});
        withhold("NoteAdded", &mut note);
        assert_eq!(note["text"], "Ada called");
    }

    #[test]
    fn taking_the_personal_data_leaves_a_payload_the_domain_still_reads() {
        let mut payload = intake();
        let taken = take_personal_data(&mut payload);
        assert_eq!(taken.name, "Ada Resident");
        assert_eq!(taken.phone.as_deref(), Some("07700 900123"));
        assert_eq!(taken.address, "1 Example Road");
        assert_eq!(payload["resident"]["name"], "");
        assert_eq!(payload["resident"]["phone"], Value::Null);
        assert_eq!(
            taken.reasonable_adjustments.as_deref(),
            Some("Profoundly deaf, needs BSL")
        );
        assert_eq!(payload["reasonable_adjustments"], "");
    }

    fn view_with_adjustments(adjustments: &str) -> v1::Complaint {
        v1::Complaint {
            reasonable_adjustments: adjustments.to_owned(),
            resident: Some(v1::Resident::default()),
            property: Some(v1::Property::default()),
            ..Default::default()
        }
    }

    #[test]
    fn sealed_adjustments_are_shown_and_older_sealed_data_leaves_the_plain_ones_standing() {
        let sealed_before: PersonalData = serde_json::from_value(serde_json::json!({
            "name": "Ada", "phone": null, "email": null, "address": "1 Example Road"
        }))
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(sealed_before.reasonable_adjustments, None);
        let mut view = view_with_adjustments("Large print letters");
        show(&mut view, Personal::Opened(sealed_before.clone()));
        assert_eq!(view.reasonable_adjustments, "Large print letters");

        let mut view = view_with_adjustments("");
        show(
            &mut view,
            Personal::Opened(PersonalData {
                reasonable_adjustments: Some("Needs BSL".to_owned()),
                ..sealed_before
            }),
        );
        assert_eq!(view.reasonable_adjustments, "Needs BSL");

        let mut view = view_with_adjustments("Large print letters");
        show(&mut view, Personal::Erased);
        assert_eq!(view.reasonable_adjustments, "");
    }

    /// The typed step must store exactly what the JSON patch it replaced stored.
    #[test]
    fn sealing_a_typed_intake_blanks_what_the_json_patch_blanked() {
        let mut payload = intake();
        let object = payload
            .as_object_mut()
            .unwrap_or_else(|| panic!("an object"));
        for (field, value) in [
            (
                "complaint_id",
                serde_json::json!("01900000-0000-7000-8000-000000000001"),
            ),
            ("channel", serde_json::json!("PHONE")),
            ("source_system", serde_json::json!("crm")),
            ("contractor_id", serde_json::json!("c1")),
            ("visit_id", Value::Null),
            ("standards", serde_json::json!(["GATES_SECURED"])),
            ("occurred_at", Value::Null),
            ("received_at", serde_json::json!("2026-01-05T10:00:00Z")),
            ("outcome_sought", serde_json::json!("")),
            ("acknowledgement_due", serde_json::json!("2026-01-12")),
            ("calendar_version", serde_json::json!("v1")),
        ] {
            object.insert(field.to_owned(), value);
        }
        let mut event = Event::from_payload("ComplaintReceived", 3, &payload)
            .unwrap_or_else(|error| panic!("{error}"));
        let mut patched = event.to_payload();
        let taken = take_personal_data(&mut patched);
        let Some((personal, reference)) = take_personal(&mut event) else {
            panic!("an intake has personal data");
        };
        assert_eq!(event.to_payload(), patched);
        assert_eq!(personal, taken);
        assert_eq!(
            serde_json::to_vec(&personal).ok(),
            serde_json::to_vec(&taken).ok()
        );
        assert_eq!(reference.as_str(), "T-1");
    }
}
