//! What every backend refuses before an append reaches its writer.

use std::collections::HashSet;

use crate::{NewEvent, StoreError};

/// Refuses what the writer would refuse anyway but needs no database to tell, so that the
/// writer's queue only carries appends that may succeed.
pub(crate) fn validate_append(events: &[NewEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Err(StoreError::EmptyAppend);
    }
    let mut seen_event_ids = HashSet::with_capacity(events.len());
    for event in events {
        if !seen_event_ids.insert(event.event_id) {
            return Err(StoreError::DuplicateEventId {
                event_id: event.event_id,
            });
        }
    }
    Ok(())
}
