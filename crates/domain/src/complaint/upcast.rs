//! Schema evolution: stored events keep the shape they were written in, and are brought up to
//! the current shape when read. Each step turns version N of one event type into version N + 1,
//! so an event of any age reaches the current version one step at a time.

use serde_json::Value;

use super::EventDecodeError;

/// The schema version each event type is written with today.
pub fn current_schema_version(event_type: &str) -> u32 {
    match event_type {
        // Version 2 added `reasonable_adjustments`. Version 3 may seal the resident's name,
        // phone and email and the property's address: they are then blank in the payload and
        // encrypted, with the resident's own key, in `personal_data` (see the server's `privacy`
        // module). A version 2 payload is a valid version 3 payload with nothing sealed.
        // Later version 3 events seal `reasonable_adjustments` as well (health information,
        // special category data): it is then blank in the payload and held in `personal_data`;
        // in earlier ones it stays in the clear and still reads. That needs no new version: the
        // domain sees a blank field either way, as it sees blank contact details, and a replica
        // still on an older build (a rolling upgrade) keeps reading the new events.
        "ComplaintReceived" => 3,
        _ => 1,
    }
}

/// Brings a stored payload to the current schema version of its type.
/// Returns the version reached and the payload in that version's shape.
pub fn upcast(
    event_type: &str,
    schema_version: u32,
    payload: Value,
) -> Result<(u32, Value), EventDecodeError> {
    let current = current_schema_version(event_type);
    let error = |reason: &str| EventDecodeError {
        event_type: event_type.to_owned(),
        schema_version,
        reason: reason.to_owned(),
    };
    if schema_version == 0 || schema_version > current {
        return Err(error("unknown schema version"));
    }
    let mut version = schema_version;
    let mut payload = payload;
    while version < current {
        payload = match (event_type, version) {
            ("ComplaintReceived", 1) => complaint_received_v1_to_v2(payload)
                .ok_or_else(|| error("version 1 payload is not a JSON object"))?,
            // Nothing was sealed before version 3: the plaintext fields stay where they are.
            ("ComplaintReceived", 2) => payload,
            _ => return Err(error("no upcaster for this version")),
        };
        version += 1;
    }
    Ok((version, payload))
}

/// Complaints logged before version 2 recorded no reasonable adjustments.
fn complaint_received_v1_to_v2(mut payload: Value) -> Option<Value> {
    payload
        .as_object_mut()?
        .entry("reasonable_adjustments")
        .or_insert_with(|| Value::from(""));
    Some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_one_complaint_received_gains_the_new_field() {
        let v1 = serde_json::json!({"complaint_id": "x", "description": "gate"});
        let (version, v2) = upcast("ComplaintReceived", 1, v1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(version, 3);
        assert_eq!(v2["reasonable_adjustments"], "");
        assert_eq!(v2["description"], "gate");
    }

    #[test]
    fn current_and_unknown_versions() {
        let payload = serde_json::json!({"text": "note"});
        assert!(matches!(
            upcast("NoteAdded", 1, payload.clone()),
            Ok((1, _))
        ));
        assert!(upcast("NoteAdded", 2, payload.clone()).is_err());
        assert!(upcast("ComplaintReceived", 4, payload.clone()).is_err());
        assert!(upcast("ComplaintReceived", 0, payload).is_err());
    }
}
