//! Who is calling, and what they may do.
//!
//! Every call is resolved once, at the edge, to a [`Principal`] by the [`guard::AuthLayer`]: from a
//! signed JWT (`authorization: Bearer …`) or an API key (`x-api-key: …` or
//! `authorization: ApiKey …`). The layer then checks the method against the one policy table in
//! [`policy`] and puts the principal in the request's extensions, where handlers find it for
//! contractor scoping and for the actor recorded in each event.

pub mod api_keys;
pub mod client;
pub mod guard;
pub mod jwt;
pub mod policy;

use std::collections::BTreeSet;
use std::fmt;

use doorstep_domain::input::ContractorId;
use tonic::Request;

use crate::error::ApiError;

/// What a caller may do. A credential carries one or more roles; a contractor credential carries
/// the contractor role alone, bound to one contractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Logs complaints, records visits, verifies contractors (call centre, work-order systems).
    Intake,
    /// Drives complaints through the Code's stages (resident liaison officers).
    Officer,
    /// Reads performance figures and reports.
    Manager,
    /// One contractor: its own complaints without resident contact details, and its own figures.
    Contractor,
    /// The contractor registry, audits, erasure and dead letters.
    Admin,
    /// Reads the event log.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Intake,
        Role::Officer,
        Role::Manager,
        Role::Contractor,
        Role::Admin,
        Role::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intake => "intake",
            Self::Officer => "officer",
            Self::Manager => "manager",
            Self::Contractor => "contractor",
            Self::Admin => "admin",
            Self::Auditor => "auditor",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who the credential names, with where it came from: `jwt:<sub>` or `api-key:<name>`. This is
    /// the actor recorded in the metadata of every event the caller causes.
    pub subject: String,
    pub roles: BTreeSet<Role>,
    /// Set exactly when the roles are `{contractor}`.
    contractor_id: Option<ContractorId>,
}

/// Why a credential does not make a principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the credential names no role")]
    NoRole,
    #[error("the credential names an unknown role")]
    UnknownRole,
    #[error("a contractor credential must name its contractor and carry no other role")]
    ContractorScope,
    #[error("the credential's subject is empty, too long or holds control characters")]
    Subject,
}

/// The longest subject recorded as an actor; a longer one is refused, not cut.
const MAX_SUBJECT_CHARS: usize = 200;

impl Principal {
    /// Builds a principal from a credential's subject, role names and contractor id, refusing
    /// combinations that would make contractor scoping ambiguous.
    pub fn new(
        subject: String,
        role_names: &[String],
        contractor_id: Option<&str>,
    ) -> Result<Self, CredentialError> {
        let name = subject
            .split_once(':')
            .map_or(subject.as_str(), |(_, name)| name);
        if name.trim().is_empty()
            || subject.chars().count() > MAX_SUBJECT_CHARS
            || subject.chars().any(char::is_control)
        {
            return Err(CredentialError::Subject);
        }
        let roles = role_names
            .iter()
            .map(|name| Role::parse(name.trim()).ok_or(CredentialError::UnknownRole))
            .collect::<Result<BTreeSet<Role>, _>>()?;
        if roles.is_empty() {
            return Err(CredentialError::NoRole);
        }
        let contractor_id = match (roles.contains(&Role::Contractor), contractor_id) {
            (true, Some(id)) if roles.len() == 1 => Some(
                ContractorId::parse("contractor_id", id)
                    .map_err(|_| CredentialError::ContractorScope)?,
            ),
            (false, None) => None,
            _ => return Err(CredentialError::ContractorScope),
        };
        Ok(Self {
            subject,
            roles,
            contractor_id,
        })
    }

    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|role| self.roles.contains(role))
    }

    /// The contractor this caller is confined to, if it is a contractor.
    pub fn contractor_scope(&self) -> Option<&ContractorId> {
        self.contractor_id.as_ref()
    }

    /// Whether a record belonging to `contractor_id` is visible to this caller.
    pub fn may_see_contractor(&self, contractor_id: &ContractorId) -> bool {
        self.contractor_scope()
            .is_none_or(|own| own == contractor_id)
    }
}

/// The principal the guard resolved for this request. Every guarded method has one; its absence
/// means the method was reached without the guard, which is refused rather than guessed.
pub fn principal<T>(request: &Request<T>) -> Result<&Principal, ApiError> {
    request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| ApiError::Unauthenticated("a credential is required".to_owned()))
}

/// Compares two secrets in time that depends on their lengths only, not on where they differ:
/// key fingerprints, and the console's CSRF, sign-in and OpenID Connect state tokens.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0_u8, |differences, (x, y)| differences | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(roles: &[&str]) -> Vec<String> {
        roles.iter().map(|role| (*role).to_owned()).collect()
    }

    #[test]
    fn a_contractor_credential_is_bound_to_one_contractor_and_nothing_else() {
        let contractor = Principal::new("jwt:c".to_owned(), &names(&["contractor"]), Some("acme"))
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            contractor.contractor_scope().map(ContractorId::as_str),
            Some("acme")
        );
        assert_eq!(
            Principal::new("jwt:c".to_owned(), &names(&["contractor"]), None),
            Err(CredentialError::ContractorScope)
        );
        assert_eq!(
            Principal::new(
                "jwt:c".to_owned(),
                &names(&["contractor", "manager"]),
                Some("acme")
            ),
            Err(CredentialError::ContractorScope)
        );
        assert_eq!(
            Principal::new("jwt:m".to_owned(), &names(&["manager"]), Some("acme")),
            Err(CredentialError::ContractorScope)
        );
    }

    #[test]
    fn subjects_are_bounded() {
        let officer = names(&["officer"]);
        assert_eq!(
            Principal::new("jwt:".to_owned(), &officer, None),
            Err(CredentialError::Subject)
        );
        assert_eq!(
            Principal::new(format!("jwt:{}", "a".repeat(300)), &officer, None),
            Err(CredentialError::Subject)
        );
        assert_eq!(
            Principal::new("jwt:a\nb".to_owned(), &officer, None),
            Err(CredentialError::Subject)
        );
        assert!(Principal::new("jwt:alice".to_owned(), &officer, None).is_ok());
    }

    #[test]
    fn unknown_or_missing_roles_are_refused() {
        assert_eq!(
            Principal::new("jwt:x".to_owned(), &names(&["root"]), None),
            Err(CredentialError::UnknownRole)
        );
        assert_eq!(
            Principal::new("jwt:x".to_owned(), &[], None),
            Err(CredentialError::NoRole)
        );
    }
}
