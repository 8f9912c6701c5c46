//! How an event's id is derived, so that a retried call finds what its first attempt wrote.
//!
//! The names hashed here are stored contracts: databases hold ids derived from them, and a retry
//! is recognised only while the same name gives the same id (pinned by a test).

use doorstep_domain::input::{RequestKey, SourceSystem, VisitId};
use doorstep_domain::stream::StreamName;
use uuid::Uuid;

/// Namespace of the event ids Doorstep derives from callers' idempotency keys and request ids.
pub const REQUEST_NAMESPACE: Uuid = Uuid::from_u128(0x6d2c_4b1e_8f0a_4c55_9a3e_0d51_7c2e_a001);

/// Where a write's event ids come from.
#[derive(Debug, Clone, Copy)]
pub enum IdPolicy<'a> {
    /// Time-ordered ids: the caller sent no key, so no retry can be recognised.
    Fresh,
    /// The caller's `request_id`, scoped by the stream: `<stream>/<request_id>/<index>`. Commands
    /// on an aggregate and an erasure (on the resident's stream) use it.
    Request(&'a RequestKey),
    /// A new complaint's `idempotency_key`, scoped by the calling system so two systems that
    /// both number their calls 1, 2, 3 never collide: `intake/<source_system>/<key>` for the
    /// intake event. The stream is new on every attempt, so the key cannot be scoped by it.
    Intake {
        source_system: &'a SourceSystem,
        key: &'a RequestKey,
    },
    /// The escalation's own id (derived by the domain from complaint, deadline, level and clock
    /// start), for the `EscalationRaised` event.
    Escalation(Uuid),
    /// The visit id: `visit/<visit_id>`.
    Visit(&'a VisitId),
}

impl<'a> IdPolicy<'a> {
    /// The caller's request id when it sent one, time-ordered ids otherwise.
    pub fn request(request_id: Option<&'a RequestKey>) -> Self {
        request_id.map_or(Self::Fresh, Self::Request)
    }

    /// The id of the `index`th event a command appends to `stream`, or `None` for a
    /// time-ordered one.
    pub fn event_id(&self, stream: &StreamName, index: usize) -> Option<Uuid> {
        let name = match self {
            Self::Fresh => return None,
            Self::Request(request_id) => format!("{stream}/{request_id}/{index}"),
            Self::Intake { source_system, key } if index == 0 => {
                format!("intake/{source_system}/{key}")
            }
            Self::Escalation(id) if index == 0 => return Some(*id),
            Self::Visit(visit_id) if index == 0 => format!("visit/{visit_id}"),
            Self::Intake { .. } | Self::Escalation(_) | Self::Visit(_) => return None,
        };
        Some(Uuid::new_v5(&REQUEST_NAMESPACE, name.as_bytes()))
    }

    /// The request field that holds the key, as a refusal names it.
    pub fn key_field(&self) -> &'static str {
        match self {
            Self::Fresh | Self::Request(_) => "request_id",
            Self::Intake { .. } => "idempotency_key",
            Self::Escalation(_) => "escalation_id",
            Self::Visit(_) => "visit_id",
        }
    }

    /// Whether a command looks for its first attempt before deciding: a caller's retry of a
    /// command on an aggregate must find its first result even when the aggregate would now
    /// refuse it. Other policies append first and look only when the store reports the id taken,
    /// so a first call, by far the commonest, costs no extra read.
    pub(crate) fn looks_first(&self) -> bool {
        matches!(self, Self::Request(_))
    }

    /// Whether a taken event id is answered by comparing command fingerprints. A visit is the
    /// same visit when its content is: the store already says so by accepting it as stored, so a
    /// taken visit id always means other details.
    pub(crate) fn compares_fingerprints(&self) -> bool {
        !matches!(self, Self::Visit(_))
    }
}
