//! The stored form of events: the type is stored beside the payload, so the payload holds only
//! the event's fields.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde::de::value::MapDeserializer;

use crate::complaint::EventDecodeError;

/// An internally tagged event (`#[serde(tag = "type")]`) as a payload without its tag.
pub fn untagged(event: &impl Serialize) -> serde_json::Value {
    let mut value = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("type");
    }
    value
}

/// Reads a payload back into an internally tagged event of type `event_type`.
///
/// The payload is read where it lies, with the tag presented as its first field: a rebuild
/// decodes millions of stored payloads, and copying each (to insert the tag) cost more than
/// reading it.
pub fn tagged<T: DeserializeOwned>(
    event_type: &str,
    schema_version: u32,
    payload: &serde_json::Value,
) -> Result<T, EventDecodeError> {
    let error = |reason: String| EventDecodeError {
        event_type: event_type.to_owned(),
        schema_version,
        reason,
    };
    let serde_json::Value::Object(fields) = payload else {
        return Err(error("payload is not a JSON object".to_owned()));
    };
    let tag = serde_json::Value::from(event_type);
    // A stored `type` field gives way to the stored type, as it did when the tag was inserted.
    let entries = std::iter::once(("type", &tag)).chain(
        fields
            .iter()
            .filter(|(name, _)| name.as_str() != "type")
            .map(|(name, value)| (name.as_str(), value)),
    );
    T::deserialize(MapDeserializer::<_, serde_json::Error>::new(entries))
        .map_err(|e| error(e.to_string()))
}
