//! The contractor registry: one row per registered contractor, and the lookup keys the call
//! centre's "is the person at my door really from X?" check is answered from.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use doorstep_domain::contractor::{
    AuditOutcome, ContractTerms, Contractor, ContractorEvent, ContractorStatus, LiaisonLead,
    attributed_lead,
};
use doorstep_domain::input::ContractorId;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::ProjectionError;
use crate::database::page;

/// The most recent equality audit, as the registry shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    pub audit_date: NaiveDate,
    pub outcome: AuditOutcome,
    pub requirements_not_met: String,
}

/// One contract's standards and whether resident champions have signed them off since they last
/// changed, as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractStanding {
    pub reference: String,
    /// The contract's standards' codes, sorted and without repeats.
    pub standards: Vec<String>,
    pub signed_off: bool,
}

impl ContractStanding {
    fn unsigned(contract: &ContractTerms) -> Self {
        let standards: BTreeSet<&str> = contract.standards.iter().map(|s| s.code()).collect();
        Self {
            reference: contract.reference.as_str().to_owned(),
            standards: standards.into_iter().map(str::to_owned).collect(),
            signed_off: false,
        }
    }
}

/// One contractor as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractorRow {
    pub contractor_id: String,
    pub legal_name: String,
    pub trading_names: Vec<String>,
    pub status: ContractorStatus,
    pub public_contact_name: String,
    pub public_phone: String,
    pub logo_url: String,
    /// The audit with the latest audit date; of two on the same date, the one recorded last.
    pub latest_audit: Option<AuditSummary>,
    pub version: u64,
    /// The liaison lead a complaint about the contractor received now is attributed to
    /// (`Contractor::liaison_lead`); None: unknown.
    pub liaison_lead: Option<LiaisonLead>,
    /// Each current contract's sign-off standing, in the profile's order.
    pub contracts: Vec<ContractStanding>,
}

impl ContractorRow {
    /// The row for a contractor's current state: what the projection must hold after its events.
    pub fn from_state(contractor: &Contractor) -> Self {
        let profile = &contractor.profile;
        Self {
            contractor_id: contractor.id.as_str().to_owned(),
            legal_name: profile.legal_name.as_str().to_owned(),
            trading_names: profile
                .trading_names
                .iter()
                .map(|name| name.as_str().to_owned())
                .collect(),
            status: contractor.status,
            public_contact_name: profile.public_contact_name.as_str().to_owned(),
            public_phone: profile.public_phone.as_str().to_owned(),
            logo_url: profile.logo_url.as_str().to_owned(),
            latest_audit: contractor
                .latest_equality_audit()
                .map(|audit| AuditSummary {
                    audit_date: audit.audit_date,
                    outcome: audit.outcome,
                    requirements_not_met: audit.requirements_not_met.as_str().to_owned(),
                }),
            version: contractor.version,
            liaison_lead: contractor.liaison_lead(),
            contracts: profile
                .contracts
                .iter()
                .map(|contract| ContractStanding {
                    signed_off: contractor
                        .sign_offs
                        .iter()
                        .any(|s| s.contract_reference == contract.reference && s.signed_off),
                    ..ContractStanding::unsigned(contract)
                })
                .collect(),
        }
    }

    /// References of the contracts whose standards are not signed off: never, or changed since.
    pub fn contracts_not_signed_off(&self) -> Vec<String> {
        self.contracts
            .iter()
            .filter(|contract| !contract.signed_off)
            .map(|contract| contract.reference.clone())
            .collect()
    }

    pub fn is_active(&self) -> bool {
        self.status == ContractorStatus::Active
    }

    /// The keys `verify_contractor` finds this contractor by: its normalised legal and trading
    /// names and its phone number.
    pub fn lookup_keys(&self) -> BTreeSet<String> {
        std::iter::once(self.legal_name.as_str())
            .chain(self.trading_names.iter().map(String::as_str))
            .map(normalise_name)
            .filter(|name| !name.is_empty())
            .chain(phone_key(&self.public_phone))
            .collect()
    }
}

/// The row after one more event of the contractor's stream.
pub fn next_row(
    row: Option<ContractorRow>,
    contractor_id: &str,
    event: &ContractorEvent,
    version: u64,
) -> Option<ContractorRow> {
    if let ContractorEvent::ContractorRegistered { profile, .. } = event {
        // A second registration is refused by the aggregate; the first one stands.
        return Some(row.unwrap_or_else(|| {
            ContractorRow {
                contractor_id: contractor_id.to_owned(),
                legal_name: profile.legal_name.as_str().to_owned(),
                trading_names: profile
                    .trading_names
                    .iter()
                    .map(|name| name.as_str().to_owned())
                    .collect(),
                status: ContractorStatus::Active,
                public_contact_name: profile.public_contact_name.as_str().to_owned(),
                public_phone: profile.public_phone.as_str().to_owned(),
                logo_url: profile.logo_url.as_str().to_owned(),
                latest_audit: None,
                version,
                liaison_lead: lead_of(&profile.contracts),
                contracts: profile
                    .contracts
                    .iter()
                    .map(ContractStanding::unsigned)
                    .collect(),
            }
        }));
    }
    let mut row = row?;
    row.version = version;
    match event {
        ContractorEvent::ContractorRegistered { .. } => {}
        ContractorEvent::ContractorUpdated { profile, .. } => {
            row.legal_name = profile.legal_name.as_str().to_owned();
            row.trading_names = profile
                .trading_names
                .iter()
                .map(|name| name.as_str().to_owned())
                .collect();
            row.public_contact_name = profile.public_contact_name.as_str().to_owned();
            row.public_phone = profile.public_phone.as_str().to_owned();
            row.logo_url = profile.logo_url.as_str().to_owned();
            row.liaison_lead = lead_of(&profile.contracts);
            // A contract keeps its sign-off while its standards stay the same set.
            row.contracts = profile
                .contracts
                .iter()
                .map(|contract| {
                    let mut standing = ContractStanding::unsigned(contract);
                    standing.signed_off = row.contracts.iter().any(|before| {
                        before.reference == standing.reference
                            && before.standards == standing.standards
                            && before.signed_off
                    });
                    standing
                })
                .collect();
        }
        ContractorEvent::ContractorSuspended { .. } => row.status = ContractorStatus::Suspended,
        ContractorEvent::ContractorReinstated { .. } => row.status = ContractorStatus::Active,
        ContractorEvent::EqualityAuditRecorded { audit, .. } => {
            // Audits may be recorded out of date order; a later recording of the same date
            // replaces the earlier one, as the aggregate's `latest_equality_audit` does.
            let is_latest = row
                .latest_audit
                .as_ref()
                .is_none_or(|latest| audit.audit_date >= latest.audit_date);
            if is_latest {
                row.latest_audit = Some(AuditSummary {
                    audit_date: audit.audit_date,
                    outcome: audit.outcome,
                    requirements_not_met: audit.requirements_not_met.as_str().to_owned(),
                });
            }
        }
        ContractorEvent::StandardsSignedOff { sign_off, .. } => {
            for contract in &mut row.contracts {
                if contract.reference == sign_off.contract_reference.as_str() {
                    contract.signed_off = true;
                }
            }
        }
        ContractorEvent::EqualityTrainingRecorded { .. } => {}
    }
    Some(row)
}

fn lead_of(contracts: &[ContractTerms]) -> Option<LiaisonLead> {
    attributed_lead(contracts.iter().map(|contract| contract.liaison.as_ref()))
}

fn encode_contracts(contracts: &[ContractStanding]) -> String {
    serde_json::Value::Array(
        contracts
            .iter()
            .map(|contract| {
                serde_json::json!({
                    "reference": contract.reference,
                    "standards": contract.standards,
                    "signed_off": contract.signed_off,
                })
            })
            .collect(),
    )
    .to_string()
}

fn decode_contracts(text: &str) -> Option<Vec<ContractStanding>> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value
        .as_array()?
        .iter()
        .map(|contract| {
            Some(ContractStanding {
                reference: contract.get("reference")?.as_str()?.to_owned(),
                standards: contract
                    .get("standards")?
                    .as_array()?
                    .iter()
                    .map(|code| code.as_str().map(str::to_owned))
                    .collect::<Option<_>>()?,
                signed_off: contract.get("signed_off")?.as_bool()?,
            })
        })
        .collect()
}

/// A name as it is compared: lower case, punctuation removed, runs of whitespace made one
/// space, no leading or trailing space. "ACME  Retrofit Ltd." becomes "acme retrofit ltd".
pub fn normalise_name(name: &str) -> String {
    let kept: String = name
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Characters a phone number may be written with besides its digits.
fn is_phone_punctuation(c: char) -> bool {
    matches!(c, '+' | ' ' | '-' | '(' | ')' | '.' | '/')
}

/// The lookup key of a phone number, `phone:<digits>`, or None when `text` is not one (fewer
/// than seven digits, or characters other than digits and phone punctuation).
///
/// UK numbers are keyed in their national form, so "+44 (0)20 7946 0018", "0044 20 7946 0018"
/// and "020 7946 0018" are the same number; other numbers keep their digits as written.
pub fn phone_key(text: &str) -> Option<String> {
    let text = text.trim();
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let only_phone_characters = text
        .chars()
        .all(|c| c.is_ascii_digit() || is_phone_punctuation(c));
    if !only_phone_characters || digits.len() < 7 {
        return None;
    }
    let international = if text.starts_with('+') {
        Some(digits.as_str())
    } else {
        digits.strip_prefix("00")
    };
    let national = match international.and_then(|number| number.strip_prefix("44")) {
        // "+44 (0)20…" writes the trunk prefix as well; it is dropped before adding it back.
        Some(subscriber) => format!("0{}", subscriber.strip_prefix('0').unwrap_or(subscriber)),
        None => digits,
    };
    Some(format!("phone:{national}"))
}

/// The key a caller's query is looked up by: a phone key when the query looks like a phone
/// number, otherwise its normalised name. None for a query with nothing to compare.
pub fn query_key(query: &str) -> Option<String> {
    phone_key(query).or_else(|| Some(normalise_name(query)).filter(|name| !name.is_empty()))
}

/// Where the next page of contractors starts: after this contractor id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractorCursor {
    pub contractor_id: String,
}

impl ContractorCursor {
    pub fn encode(&self) -> String {
        self.contractor_id.clone()
    }

    pub fn decode(token: &str) -> Result<Self, ProjectionError> {
        let id = ContractorId::parse("page_token", token)
            .map_err(|_| ProjectionError::InvalidPageToken)?;
        Ok(Self {
            contractor_id: id.as_str().to_owned(),
        })
    }
}

pub(crate) fn status_code(status: ContractorStatus) -> &'static str {
    match status {
        ContractorStatus::Active => "ACTIVE",
        ContractorStatus::Suspended => "SUSPENDED",
    }
}

fn status_from_code(code: &str) -> Option<ContractorStatus> {
    match code {
        "ACTIVE" => Some(ContractorStatus::Active),
        "SUSPENDED" => Some(ContractorStatus::Suspended),
        _ => None,
    }
}

/// The columns `decode` reads, in a macro so `concat!` can build constant queries from them.
macro_rules! columns {
    ($prefix:literal) => {
        concat!(
            $prefix,
            "contractor_id, ",
            $prefix,
            "legal_name, ",
            $prefix,
            "trading_names, ",
            $prefix,
            "status, ",
            $prefix,
            "public_contact_name, ",
            $prefix,
            "public_phone, ",
            $prefix,
            "logo_url, ",
            $prefix,
            "latest_audit_date, ",
            $prefix,
            "latest_audit_outcome, ",
            $prefix,
            "latest_audit_requirements_not_met, ",
            $prefix,
            "version, ",
            $prefix,
            "liaison_lead, ",
            $prefix,
            "contracts"
        )
    };
}

/// Writes the row and replaces the contractor's lookup keys with those of its current names and
/// phone number, so a name dropped in an update no longer finds it.
pub(crate) async fn store(
    connection: &mut AnyConnection,
    row: &ContractorRow,
    position: u64,
) -> Result<(), ProjectionError> {
    let trading_names = serde_json::to_string(&row.trading_names)
        .map_err(|error| corrupt(&row.contractor_id, &error.to_string()))?;
    let audit = row.latest_audit.as_ref();
    sqlx::query(
        "INSERT INTO contractors (contractor_id, legal_name, trading_names, status, \
         public_contact_name, public_phone, logo_url, latest_audit_date, latest_audit_outcome, \
         latest_audit_requirements_not_met, version, last_position, liaison_lead, contracts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (contractor_id) DO UPDATE SET legal_name = excluded.legal_name, \
         trading_names = excluded.trading_names, status = excluded.status, \
         public_contact_name = excluded.public_contact_name, \
         public_phone = excluded.public_phone, logo_url = excluded.logo_url, \
         latest_audit_date = excluded.latest_audit_date, \
         latest_audit_outcome = excluded.latest_audit_outcome, \
         latest_audit_requirements_not_met = excluded.latest_audit_requirements_not_met, \
         version = excluded.version, last_position = excluded.last_position, \
         liaison_lead = excluded.liaison_lead, contracts = excluded.contracts",
    )
    .bind(row.contractor_id.as_str())
    .bind(row.legal_name.as_str())
    .bind(trading_names)
    .bind(status_code(row.status))
    .bind(row.public_contact_name.as_str())
    .bind(row.public_phone.as_str())
    .bind(row.logo_url.as_str())
    .bind(audit.map(|audit| audit.audit_date.to_string()))
    .bind(audit.map(|audit| audit.outcome.code()))
    .bind(audit.map(|audit| audit.requirements_not_met.clone()))
    .bind(i64::try_from(row.version).unwrap_or(i64::MAX))
    .bind(i64::try_from(position).unwrap_or(i64::MAX))
    .bind(crate::handling::lead_code(row.liaison_lead))
    .bind(encode_contracts(&row.contracts))
    .execute(&mut *connection)
    .await?;

    sqlx::query("DELETE FROM contractor_lookup WHERE contractor_id = $1")
        .bind(row.contractor_id.as_str())
        .execute(&mut *connection)
        .await?;
    for key in row.lookup_keys() {
        sqlx::query("INSERT INTO contractor_lookup (key, contractor_id) VALUES ($1, $2)")
            .bind(key)
            .bind(row.contractor_id.as_str())
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

/// One contractor's row, read in the projection's transaction or from the pool.
pub(crate) async fn get<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    contractor_id: &str,
) -> Result<Option<ContractorRow>, ProjectionError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(""),
        " FROM contractors WHERE contractor_id = $1"
    ))
    .bind(contractor_id)
    .fetch_optional(executor)
    .await?;
    row.map(|row| decode(&row)).transpose()
}

/// The liaison lead a complaint about `contractor_id` received now is attributed to; None for
/// unknown, or for a contractor not in the registry.
pub(crate) async fn liaison_lead(
    connection: &mut AnyConnection,
    contractor_id: &str,
) -> Result<Option<LiaisonLead>, ProjectionError> {
    let code: Option<String> =
        sqlx::query_scalar("SELECT liaison_lead FROM contractors WHERE contractor_id = $1")
            .bind(contractor_id)
            .fetch_optional(connection)
            .await?;
    crate::handling::lead_from_code(code.as_deref().unwrap_or_default())
        .map_err(|reason| corrupt(contractor_id, &reason))
}

/// How many contractors have no equality audit dated on or after `oldest_in_time` (or none).
pub(crate) async fn overdue_audit_count(
    pool: &AnyPool,
    oldest_in_time: NaiveDate,
) -> Result<u64, ProjectionError> {
    let count: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM contractors \
         WHERE latest_audit_date IS NULL OR latest_audit_date < $1",
    )
    .bind(oldest_in_time.to_string())
    .fetch_one(pool)
    .await?;
    u64::try_from(count).map_err(|_| corrupt("", "negative count"))
}

/// One page of contractors in id order, and the cursor of the page after it.
pub(crate) async fn list(
    pool: &AnyPool,
    status: Option<ContractorStatus>,
    page_size: u32,
    after: Option<&ContractorCursor>,
) -> Result<(Vec<ContractorRow>, Option<ContractorCursor>), ProjectionError> {
    let page_size = page_size.max(1);
    // Empty text sorts before every id, and NULL matches every status: one query serves every
    // combination of filters and still walks the primary key (or the status index) in order.
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(""),
        " FROM contractors WHERE ($1 = '' OR status = $1) AND contractor_id > $2 \
         ORDER BY contractor_id LIMIT $3"
    ))
    .bind(status.map_or("", status_code))
    .bind(after.map_or("", |cursor| cursor.contractor_id.as_str()))
    // One row more than the page tells whether another page follows.
    .bind(i64::from(page_size) + 1)
    .fetch_all(pool)
    .await?;
    let contractors = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    Ok(page(contractors, page_size, |last| ContractorCursor {
        contractor_id: last.contractor_id.clone(),
    }))
}

/// Contractors whose legal name, a trading name or phone number is `query`, in id order.
pub(crate) async fn verify(
    pool: &AnyPool,
    query: &str,
) -> Result<Vec<ContractorRow>, ProjectionError> {
    let Some(key) = query_key(query) else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!("c."),
        " FROM contractor_lookup l JOIN contractors c ON c.contractor_id = l.contractor_id \
         WHERE l.key = $1 ORDER BY c.contractor_id"
    ))
    .bind(key)
    .fetch_all(pool)
    .await?;
    rows.iter().map(decode).collect()
}

fn corrupt(contractor_id: &str, reason: &str) -> ProjectionError {
    ProjectionError::CorruptRecord {
        table: "contractors",
        key: contractor_id.to_owned(),
        reason: reason.to_owned(),
    }
}

fn decode(row: &AnyRow) -> Result<ContractorRow, ProjectionError> {
    let contractor_id: String = row.try_get("contractor_id")?;
    let trading_names: String = row.try_get("trading_names")?;
    let status: String = row.try_get("status")?;
    let audit_date: Option<String> = row.try_get("latest_audit_date")?;
    let audit_outcome: Option<String> = row.try_get("latest_audit_outcome")?;
    let requirements_not_met: Option<String> = row.try_get("latest_audit_requirements_not_met")?;
    let version: i64 = row.try_get("version")?;
    let liaison_lead: String = row.try_get("liaison_lead")?;
    let contracts: String = row.try_get("contracts")?;
    let latest_audit = match (audit_date, audit_outcome) {
        (Some(date), Some(outcome)) => Some(AuditSummary {
            audit_date: date
                .parse()
                .map_err(|_| corrupt(&contractor_id, "latest_audit_date is not a date"))?,
            outcome: AuditOutcome::from_code(&outcome)
                .ok_or_else(|| corrupt(&contractor_id, "unknown audit outcome"))?,
            // Written with every audit (empty when none were unmet): missing, it is half an audit.
            requirements_not_met: requirements_not_met
                .ok_or_else(|| corrupt(&contractor_id, "half an audit"))?,
        }),
        (None, None) => None,
        _ => return Err(corrupt(&contractor_id, "half an audit")),
    };
    Ok(ContractorRow {
        trading_names: serde_json::from_str(&trading_names)
            .map_err(|_| corrupt(&contractor_id, "trading_names is not a JSON list of text"))?,
        status: status_from_code(&status)
            .ok_or_else(|| corrupt(&contractor_id, "unknown status"))?,
        legal_name: row.try_get("legal_name")?,
        public_contact_name: row.try_get("public_contact_name")?,
        public_phone: row.try_get("public_phone")?,
        logo_url: row.try_get("logo_url")?,
        latest_audit,
        liaison_lead: crate::handling::lead_from_code(&liaison_lead)
            .map_err(|reason| corrupt(&contractor_id, &reason))?,
        contracts: decode_contracts(&contracts)
            .ok_or_else(|| corrupt(&contractor_id, "contracts is not a list of contracts"))?,
        version: u64::try_from(version).map_err(|_| corrupt(&contractor_id, "negative version"))?,
        contractor_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_without_case_spacing_or_punctuation() {
        assert_eq!(
            normalise_name("  ACME   Retrofit Ltd. "),
            "acme retrofit ltd"
        );
        assert_eq!(
            normalise_name("O'Brien & Sons\tInsulation"),
            "obrien sons insulation"
        );
        assert_eq!(normalise_name("Énergie Vert"), "énergie vert");
        assert_eq!(normalise_name("..."), "");
    }

    #[test]
    fn phone_numbers_compare_by_digits_in_national_form() {
        let expected = Some("phone:02079460018".to_owned());
        for written in [
            "020 7946 0018",
            "(020) 7946-0018",
            "020.7946.0018",
            "+44 20 7946 0018",
            "+44 (0)20 7946 0018",
            "0044 20 7946 0018",
        ] {
            assert_eq!(phone_key(written), expected, "{written}");
        }
        assert_eq!(
            phone_key("+33 1 23 45 67 89"),
            Some("phone:33123456789".to_owned())
        );
        assert_eq!(phone_key("123 456"), None, "too few digits");
        assert_eq!(phone_key("Acme 0207946001"), None, "letters make it a name");
    }

    #[test]
    fn a_query_is_a_phone_number_or_a_name() {
        assert_eq!(
            query_key("020 7946 0018"),
            Some("phone:02079460018".to_owned())
        );
        assert_eq!(query_key("Acme 24"), Some("acme 24".to_owned()));
        assert_eq!(query_key(" - "), None);
    }
}
