//! The one policy table: which roles may call which method.
//!
//! A method missing from the table is refused to everyone (after authentication), so an RPC added
//! without a policy line is closed, not open; a test enumerates every method in the API's
//! descriptor set and fails on any without a line here.

use super::Role::{self, Admin, Auditor, Contractor, Intake, Manager, Officer};

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credential needed: health checks, for load balancers and orchestrators.
    Public,
    /// Any authenticated caller, whatever its roles: gRPC reflection, which describes the API's
    /// shape (public in `proto/` anyway) and nothing of its data.
    Authenticated,
    /// Callers holding at least one of these roles.
    Roles(&'static [Role]),
}

/// Services ruled as a whole, by gRPC service name.
const OPEN_SERVICES: &[(&str, Access)] = &[
    ("grpc.health.v1.Health", Access::Public),
    ("grpc.reflection.v1.ServerReflection", Access::Authenticated),
    (
        "grpc.reflection.v1alpha.ServerReflection",
        Access::Authenticated,
    ),
    // Served only by `doorstep-bench`'s servers (`Application::serve_also`), never by
    // `doorstep`: a trivial method admitted exactly as LogComplaint is, for the echo phase.
    ("doorstep.bench.v1.EchoService", Access::Roles(&[Intake])),
];

const READERS_OF_COMPLAINTS: &[Role] = &[Intake, Officer, Manager, Contractor];

/// Doorstep's own methods, by `service/method`. Contractor callers are further confined to their
/// own records by the handlers (see `ARCHITECTURE.md`, "Who may see what").
pub const POLICY: &[(&str, &[Role])] = &[
    ("doorstep.v1.ComplaintService/LogComplaint", &[Intake]),
    (
        "doorstep.v1.ComplaintService/AcknowledgeComplaint",
        &[Officer],
    ),
    ("doorstep.v1.ComplaintService/ExtendDeadline", &[Officer]),
    ("doorstep.v1.ComplaintService/RecordFindings", &[Officer]),
    ("doorstep.v1.ComplaintService/IssueResponse", &[Officer]),
    ("doorstep.v1.ComplaintService/RequestStageTwo", &[Officer]),
    ("doorstep.v1.ComplaintService/CloseComplaint", &[Officer]),
    ("doorstep.v1.ComplaintService/ReopenComplaint", &[Officer]),
    ("doorstep.v1.ComplaintService/WithdrawComplaint", &[Officer]),
    ("doorstep.v1.ComplaintService/AddNote", &[Officer]),
    (
        "doorstep.v1.ComplaintService/GetComplaint",
        READERS_OF_COMPLAINTS,
    ),
    (
        "doorstep.v1.ComplaintService/ListComplaints",
        READERS_OF_COMPLAINTS,
    ),
    ("doorstep.v1.ComplaintService/ForgetResident", &[Admin]),
    ("doorstep.v1.ContractorService/RegisterContractor", &[Admin]),
    ("doorstep.v1.ContractorService/UpdateContractor", &[Admin]),
    ("doorstep.v1.ContractorService/SuspendContractor", &[Admin]),
    (
        "doorstep.v1.ContractorService/ReinstateContractor",
        &[Admin],
    ),
    (
        "doorstep.v1.ContractorService/RecordEqualityAudit",
        &[Admin],
    ),
    (
        "doorstep.v1.ContractorService/GetContractor",
        &[Intake, Officer, Manager, Admin],
    ),
    (
        "doorstep.v1.ContractorService/ListContractors",
        &[Intake, Officer, Manager, Admin],
    ),
    (
        "doorstep.v1.ContractorService/VerifyContractor",
        &[Intake, Officer, Admin],
    ),
    ("doorstep.v1.VisitService/RecordVisits", &[Intake]),
    // Escalations are for the people the ladder tells: liaison officers act on them, managers
    // (contract manager, head of service) follow and acknowledge theirs; failed deliveries are
    // the administrator's to retry.
    (
        "doorstep.v1.EscalationService/WatchEscalations",
        &[Officer, Manager],
    ),
    (
        "doorstep.v1.EscalationService/ListEscalations",
        &[Officer, Manager],
    ),
    (
        "doorstep.v1.EscalationService/AcknowledgeEscalation",
        &[Officer, Manager],
    ),
    ("doorstep.v1.EscalationService/ListDeadLetters", &[Admin]),
    ("doorstep.v1.EscalationService/RetryDeadLetter", &[Admin]),
    ("doorstep.v1.EventService/ReadStream", &[Auditor]),
    ("doorstep.v1.EventService/SubscribeAll", &[Auditor]),
    (
        "doorstep.v1.PerformanceService/GetContractorPerformance",
        &[Manager, Contractor],
    ),
    (
        "doorstep.v1.PerformanceService/ListContractorPerformance",
        &[Manager],
    ),
    (
        "doorstep.v1.PerformanceService/GetComplaintHandlingReport",
        &[Manager],
    ),
    // Officers inspect on site and see findings through; managers read; a contractor reads its
    // own inspections and findings (confined by the handlers; inspections hold no resident's
    // personal data).
    ("doorstep.v1.InspectionService/RecordInspection", &[Officer]),
    (
        "doorstep.v1.InspectionService/CorrectInspection",
        &[Officer],
    ),
    (
        "doorstep.v1.InspectionService/ResolveInspectionFinding",
        &[Officer],
    ),
    (
        "doorstep.v1.InspectionService/GetInspection",
        &[Officer, Manager, Contractor],
    ),
    (
        "doorstep.v1.InspectionService/ListInspections",
        &[Officer, Manager, Contractor],
    ),
    // A contract's sign-off and its contractor's equality training belong to the contract
    // register, kept by the administrators who record the contracts themselves (Register and
    // UpdateContractor) and the equality audits; liaison officers bring the champions' sign-off
    // to them rather than writing contract records.
    (
        "doorstep.v1.ContractorService/RecordStandardsSignOff",
        &[Admin],
    ),
    (
        "doorstep.v1.ContractorService/RecordEqualityTraining",
        &[Admin],
    ),
    // Programme-wide, like ListContractorPerformance: no one contractor's figures.
    (
        "doorstep.v1.PerformanceService/CompareLiaisonLeads",
        &[Manager],
    ),
];

/// Who holds each role, for the README's role table.
const HOLDERS: &[(Role, &str)] = &[
    (Intake, "call centre, work-order systems"),
    (Officer, "resident liaison officers"),
    (Manager, "contract managers, head of service"),
    (Contractor, "one contractor, confined to its own records"),
    (Admin, "the service's administrator"),
    (Auditor, "auditors of the event log"),
];

/// The README's "Who may call what" table, rendered from `POLICY` so the two cannot disagree: one
/// row per role, the methods it may call grouped by service in the table's order.
pub fn role_table_markdown() -> String {
    let mut table = String::from("| role | held by | may call |\n|---|---|---|\n");
    for (role, holders) in HOLDERS {
        let mut services: Vec<(&str, Vec<&str>)> = Vec::new();
        for (path, roles) in POLICY {
            if !roles.contains(role) {
                continue;
            }
            let (service, method) = path.split_once('/').unwrap_or((path, ""));
            let service = service.rsplit('.').next().unwrap_or(service);
            match services.iter_mut().find(|(name, _)| *name == service) {
                Some((_, methods)) => methods.push(method),
                None => services.push((service, vec![method])),
            }
        }
        let calls: Vec<String> = services
            .iter()
            .map(|(service, methods)| format!("{service}: `{}`", methods.join("`, `")))
            .collect();
        table.push_str(&format!(
            "| `{}` | {holders} | {} |\n",
            role.as_str(),
            calls.join("; ")
        ));
    }
    table
}

/// The access rule for a request path `/<service>/<method>`. `None` is a path with no rule:
/// refused to everyone.
pub fn access(path: &str) -> Option<Access> {
    let path = path.strip_prefix('/')?;
    let (service, _) = path.split_once('/')?;
    if let Some((_, access)) = OPEN_SERVICES.iter().find(|(open, _)| *open == service) {
        return Some(*access);
    }
    POLICY
        .iter()
        .find(|(method, _)| *method == path)
        .map(|(_, roles)| Access::Roles(roles))
}

/// In plain words, which roles may call a method: "the intake role", "the officer or manager
/// role", "one of the intake, officer, manager or contractor roles"; for a path with no rule,
/// that no role may.
pub fn roles_in_words(access: Option<Access>) -> String {
    let roles = match access {
        Some(Access::Roles(roles)) => roles,
        Some(Access::Public) => return "anyone".to_owned(),
        Some(Access::Authenticated) => return "any role".to_owned(),
        None => return "no role (the method has no line in the policy)".to_owned(),
    };
    let names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
    match names.as_slice() {
        [] => "no role".to_owned(),
        [only] => format!("the {only} role"),
        [first, second] => format!("the {first} or {second} role"),
        [rest @ .., last] => format!("one of the {} or {last} roles", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method of every Doorstep service, as `service/method`.
    fn every_api_method() -> Vec<String> {
        doorstep_api::methods()
            .unwrap_or_else(|error| panic!("the descriptor set decodes: {error}"))
            .into_iter()
            .map(|method| method.path)
            .collect()
    }

    #[test]
    fn every_method_of_the_api_has_a_policy_line() {
        let methods = every_api_method();
        assert!(methods.len() >= 26, "found only {methods:?}");
        let missing: Vec<&String> = methods
            .iter()
            .filter(|method| !POLICY.iter().any(|(line, _)| line == method))
            .collect();
        assert!(missing.is_empty(), "no policy line for {missing:?}");
    }

    #[test]
    fn every_policy_line_names_a_method_that_exists() {
        let methods = every_api_method();
        for (line, roles) in POLICY {
            assert!(methods.iter().any(|method| method == line), "{line}");
            assert!(!roles.is_empty(), "{line} names no role");
        }
    }

    #[test]
    fn unknown_paths_have_no_rule_and_health_is_public() {
        assert_eq!(access("/doorstep.v1.ComplaintService/DropTables"), None);
        assert_eq!(access("no-slash"), None);
        assert_eq!(access("/grpc.health.v1.Health/Check"), Some(Access::Public));
        assert_eq!(
            access("/doorstep.v1.EventService/ReadStream"),
            Some(Access::Roles(&[Auditor]))
        );
    }

    /// The README's role table is `role_table_markdown()`, between its markers. Run with
    /// `DOORSTEP_BLESS=1` to write the table into the README after changing `POLICY`.
    #[test]
    fn the_readme_role_table_is_the_policy() {
        const START: &str = "<!-- role-table: generated from auth/policy.rs -->\n";
        const END: &str = "<!-- role-table end -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).expect("the README is readable");
        let start = readme.find(START).expect("the README marks its role table") + START.len();
        let end = start
            + readme[start..]
                .find(END)
                .expect("the role table's end marker");
        let expected = role_table_markdown();
        if readme[start..end] != expected && std::env::var_os("DOORSTEP_BLESS").is_some() {
            let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
            std::fs::write(path, updated).expect("the README is writable");
            return;
        }
        assert_eq!(
            readme[start..end],
            expected,
            "the README's role table differs from POLICY; run with DOORSTEP_BLESS=1 to rewrite it"
        );
    }

    #[test]
    fn the_roles_that_may_call_are_said_in_words() {
        assert_eq!(
            roles_in_words(access("/doorstep.v1.ComplaintService/LogComplaint")),
            "the intake role"
        );
        assert_eq!(
            roles_in_words(access("/doorstep.v1.EscalationService/ListEscalations")),
            "the officer or manager role"
        );
        assert_eq!(
            roles_in_words(access("/doorstep.v1.ComplaintService/GetComplaint")),
            "one of the intake, officer, manager or contractor roles"
        );
    }

    #[test]
    fn every_role_has_holders_in_the_table() {
        for role in Role::ALL {
            assert!(HOLDERS.iter().any(|(held, _)| *held == role), "{role:?}");
        }
    }
}
