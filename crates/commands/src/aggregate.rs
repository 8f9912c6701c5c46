//! What the application layer needs of an aggregate: its pure rules and its stored form.

use doorstep_domain::DomainError;
use doorstep_domain::complaint::EventDecodeError;
use doorstep_domain::stream::Category;

/// An event-sourced aggregate: its pure rules and the stored form of its events.
pub trait Aggregate: Send + Sync + 'static {
    type State: Send;
    type Command: Clone + Send;
    type Event: StoredEvent + Clone + Send + Sync;

    /// The stream category: streams are named `<CATEGORY>-<id>`.
    const CATEGORY: Category;
    /// How the API names the thing, in "no <NOUN> has this id".
    const NOUN: &'static str;

    fn decide(
        &self,
        state: Option<&Self::State>,
        command: Self::Command,
    ) -> Result<Vec<Self::Event>, DomainError>;
    fn evolve(state: Option<Self::State>, event: &Self::Event) -> Option<Self::State>;
    fn version(state: &Self::State) -> u64;
    fn from_payload(
        event_type: &str,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Result<Self::Event, EventDecodeError>;
}

/// An event's stored form: its type, schema version and payload.
pub trait StoredEvent {
    fn event_type(&self) -> &'static str;
    fn schema_version(&self) -> u32;
    fn to_payload(&self) -> serde_json::Value;
}

macro_rules! stored_event {
    ($($event:ty),+) => {$(
        impl StoredEvent for $event {
            fn event_type(&self) -> &'static str {
                <$event>::event_type(self)
            }

            fn schema_version(&self) -> u32 {
                <$event>::schema_version(self)
            }

            fn to_payload(&self) -> serde_json::Value {
                <$event>::to_payload(self)
            }
        }
    )+};
}

stored_event!(
    doorstep_domain::Event,
    doorstep_domain::resident::ResidentEvent,
    doorstep_domain::contractor::ContractorEvent,
    doorstep_domain::contractor::VisitEvent,
    doorstep_domain::inspection::InspectionEvent
);
