//! The settings escalations are planned and delivered with, which the schedule and the outbox share.

use doorstep_domain::WorkingDayCalendar;
use doorstep_domain::escalation::EscalationPolicy;

/// What the runner needs to schedule escalations and fill the outbox: the ladder policy, the
/// calendar, and where deliveries go. Every replica on one database must use the same.
#[derive(Debug, Clone)]
pub struct EscalationPlanner {
    pub policy: EscalationPolicy,
    pub calendar: WorkingDayCalendar,
    /// A delivery per escalation to each of these URLs.
    pub webhook_urls: Vec<String>,
    /// A delivery per escalation to each recipient by email.
    pub email: bool,
}

impl Default for EscalationPlanner {
    fn default() -> Self {
        Self {
            policy: EscalationPolicy::default(),
            calendar: WorkingDayCalendar::england_and_wales(),
            webhook_urls: Vec::new(),
            email: false,
        }
    }
}
