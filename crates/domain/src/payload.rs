//! The stored form of events: the type is stored beside the payload, so the payload holds only
//! the event's fields.

use serde::Serialize;
use serde::de::DeserializeOwned;

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
pub fn tagged<T: DeserializeOwned>(
    event_type: &str,
    schema_version: u32,
    payload: serde_json::Value,
) -> Result<T, EventDecodeError> {
    let error = |reason: String| EventDecodeError {
        event_type: event_type.to_owned(),
        schema_version,
        reason,
    };
    let mut fields = match payload {
        serde_json::Value::Object(fields) => fields,
        _ => return Err(error("payload is not a JSON object".to_owned())),
    };
    fields.insert("type".to_owned(), serde_json::Value::from(event_type));
    serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| error(e.to_string()))
}
