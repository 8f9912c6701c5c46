//! Which pages and actions a principal may use: each is the gRPC method whose data it shows or
//! whose action it performs, checked against the one policy table (`auth/policy.rs`), so the
//! console and the API can never disagree.

use crate::auth::Principal;
use crate::auth::policy::{self, Access};

/// The gRPC methods the console calls, by `service/method` as the policy names them.
pub mod method {
    pub const LIST_CONTRACTOR_PERFORMANCE: &str =
        "doorstep.v1.PerformanceService/ListContractorPerformance";
    pub const GET_CONTRACTOR_PERFORMANCE: &str =
        "doorstep.v1.PerformanceService/GetContractorPerformance";
    pub const GET_COMPLAINT_HANDLING_REPORT: &str =
        "doorstep.v1.PerformanceService/GetComplaintHandlingReport";
    pub const GET_CONTRACTOR: &str = "doorstep.v1.ContractorService/GetContractor";
    pub const LIST_CONTRACTORS: &str = "doorstep.v1.ContractorService/ListContractors";
    pub const LIST_COMPLAINTS: &str = "doorstep.v1.ComplaintService/ListComplaints";
    pub const GET_COMPLAINT: &str = "doorstep.v1.ComplaintService/GetComplaint";
    pub const LIST_ESCALATIONS: &str = "doorstep.v1.EscalationService/ListEscalations";
    pub const ACKNOWLEDGE_ESCALATION: &str = "doorstep.v1.EscalationService/AcknowledgeEscalation";
    pub const LIST_DEAD_LETTERS: &str = "doorstep.v1.EscalationService/ListDeadLetters";
    pub const RETRY_DEAD_LETTER: &str = "doorstep.v1.EscalationService/RetryDeadLetter";
    pub const COMPARE_LIAISON_LEADS: &str = "doorstep.v1.PerformanceService/CompareLiaisonLeads";

    /// Every method the console calls, for the test that each has a policy line.
    #[cfg(test)]
    pub const ALL: [&str; 12] = [
        LIST_CONTRACTOR_PERFORMANCE,
        GET_CONTRACTOR_PERFORMANCE,
        GET_COMPLAINT_HANDLING_REPORT,
        GET_CONTRACTOR,
        LIST_CONTRACTORS,
        LIST_COMPLAINTS,
        GET_COMPLAINT,
        LIST_ESCALATIONS,
        ACKNOWLEDGE_ESCALATION,
        LIST_DEAD_LETTERS,
        RETRY_DEAD_LETTER,
        COMPARE_LIAISON_LEADS,
    ];
}

/// Whether the policy lets `principal` call `method` (`service/method`).
pub fn may_call(principal: &Principal, method: &str) -> bool {
    match policy::access(&format!("/{method}")) {
        Some(Access::Public | Access::Authenticated) => true,
        Some(Access::Roles(roles)) => principal.has_any(roles),
        None => false,
    }
}

/// A page of the console, and the methods that decide whether a principal may open it: any one
/// of them is enough (the page then shows the sections whose own method the principal may call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Programme,
    Contractors,
    Complaints,
    Escalations,
}

impl Page {
    pub const ALL: [Page; 4] = [
        Page::Programme,
        Page::Contractors,
        Page::Complaints,
        Page::Escalations,
    ];

    pub fn methods(self) -> &'static [&'static str] {
        match self {
            Self::Programme => &[method::LIST_CONTRACTOR_PERFORMANCE],
            Self::Contractors => &[method::GET_CONTRACTOR_PERFORMANCE, method::GET_CONTRACTOR],
            Self::Complaints => &[method::LIST_COMPLAINTS],
            Self::Escalations => &[method::LIST_ESCALATIONS, method::LIST_DEAD_LETTERS],
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::Programme => "Programme",
            Self::Contractors => "Contractors",
            Self::Complaints => "Complaints",
            Self::Escalations => "Escalations",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Self::Programme => "/programme",
            Self::Contractors => "/contractors",
            Self::Complaints => "/complaints",
            Self::Escalations => "/escalations",
        }
    }

    pub fn allows(self, principal: &Principal) -> bool {
        self.methods()
            .iter()
            .any(|method| may_call(principal, method))
    }
}

/// Where a principal lands after signing in: the first page it may open.
pub fn home(principal: &Principal) -> &'static str {
    Page::ALL
        .into_iter()
        .find(|page| page.allows(principal))
        .map_or("/no-access", |page| {
            // A contractor's own page is its home: the contractor list is not theirs to see.
            match (page, principal.contractor_scope()) {
                (Page::Contractors, Some(_)) => "/contractors/mine",
                _ => page.path(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(roles: &[&str], contractor: Option<&str>) -> Principal {
        let roles: Vec<String> = roles.iter().map(|role| (*role).to_owned()).collect();
        Principal::new("jwt:t".to_owned(), &roles, contractor).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_method_the_console_calls_has_a_policy_line() {
        for method in method::ALL {
            assert!(
                policy::POLICY.iter().any(|(line, _)| *line == method),
                "{method}"
            );
        }
    }

    #[test]
    fn pages_follow_the_policy_table() {
        let manager = principal(&["manager"], None);
        assert!(Page::Programme.allows(&manager));
        assert_eq!(home(&manager), "/programme");
        let officer = principal(&["officer"], None);
        assert!(!Page::Programme.allows(&officer));
        assert!(Page::Escalations.allows(&officer));
        assert_eq!(home(&officer), "/contractors");
        let contractor = principal(&["contractor"], Some("acme"));
        assert!(!Page::Programme.allows(&contractor));
        assert!(!Page::Escalations.allows(&contractor));
        assert_eq!(home(&contractor), "/contractors/mine");
        let auditor = principal(&["auditor"], None);
        assert_eq!(home(&auditor), "/no-access");
        let admin = principal(&["admin"], None);
        assert!(Page::Escalations.allows(&admin));
        assert!(!may_call(&admin, method::ACKNOWLEDGE_ESCALATION));
    }
}
