//! Stream names: every stream in the log is `<category>-<id>`. Reading a name back checks both
//! parts, so a corrupt name is an error rather than an empty or made-up id.

use crate::input::{ComplaintId, ContractorId, ResidentReference, VisitId};

/// What a stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Complaint,
    Contractor,
    Visit,
    Resident,
    Inspection,
}

impl Category {
    const ALL: [Self; 5] = [
        Self::Complaint,
        Self::Contractor,
        Self::Visit,
        Self::Resident,
        Self::Inspection,
    ];

    /// The category as it stands in stream names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complaint => "complaint",
            Self::Contractor => "contractor",
            Self::Visit => "visit",
            Self::Resident => "resident",
            Self::Inspection => "inspection",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream name that does not read as `<category>-<id>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream name {name:?} {reason}")]
pub struct StreamNameError {
    pub name: String,
    pub reason: &'static str,
}

/// A stream's name: its category and the id of the thing it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamName {
    category: Category,
    id: String,
}

impl StreamName {
    /// A stream of `category` for `id`; the id is any non-empty text.
    pub fn new(category: Category, id: impl std::fmt::Display) -> Self {
        Self {
            category,
            id: id.to_string(),
        }
    }

    pub fn complaint(id: &ComplaintId) -> Self {
        Self::new(Category::Complaint, id)
    }

    pub fn contractor(id: &ContractorId) -> Self {
        Self::new(Category::Contractor, id)
    }

    pub fn visit(id: &VisitId) -> Self {
        Self::new(Category::Visit, id)
    }

    pub fn resident(reference: &ResidentReference) -> Self {
        Self::new(Category::Resident, reference)
    }

    /// Reads a stored stream name back: a known category, a `-`, and a non-empty id.
    pub fn parse(name: &str) -> Result<Self, StreamNameError> {
        let error = |reason| StreamNameError {
            name: name.to_owned(),
            reason,
        };
        let (category, id) = name
            .split_once('-')
            .ok_or_else(|| error("has no `-` between category and id"))?;
        let category = Category::ALL
            .into_iter()
            .find(|known| known.as_str() == category)
            .ok_or_else(|| error("has an unknown category"))?;
        if id.is_empty() {
            return Err(error("has an empty id"));
        }
        Ok(Self::new(category, id))
    }

    pub fn category(&self) -> Category {
        self.category
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The complaint this stream holds; an error for another category or an id that is not a
    /// complaint id.
    pub fn complaint_id(&self) -> Result<ComplaintId, StreamNameError> {
        let error = |reason| StreamNameError {
            name: self.to_string(),
            reason,
        };
        if self.category != Category::Complaint {
            return Err(error("is not a complaint's stream"));
        }
        ComplaintId::parse("stream", &self.id).map_err(|_| error("holds no complaint id"))
    }
}

/// The id part of a stored stream name that must be of `category`: borrowed from `name`, never
/// empty.
pub fn id_in(name: &str, category: Category) -> Result<&str, StreamNameError> {
    let error = |reason| StreamNameError {
        name: name.to_owned(),
        reason,
    };
    match name.split_once('-') {
        Some((found, id)) if found == category.as_str() && !id.is_empty() => Ok(id),
        Some((found, _)) if found == category.as_str() => Err(error("has an empty id")),
        _ => Err(error("is not of the expected category")),
    }
}

impl std::fmt::Display for StreamName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.category, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_as_they_were_written() {
        let id = ComplaintId::from_uuid(uuid::Uuid::from_u128(7));
        let name = StreamName::complaint(&id);
        assert_eq!(name.to_string(), format!("complaint-{id}"));
        let parsed = StreamName::parse(&name.to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed, name);
        assert_eq!(parsed.complaint_id(), Ok(id));
        let visit = StreamName::parse("visit-V-1-2").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((visit.category(), visit.id()), (Category::Visit, "V-1-2"));
    }

    #[test]
    fn a_corrupt_name_is_an_error_never_an_empty_id() {
        for corrupt in [
            "complaint-",
            "complaint",
            "",
            "-x",
            "parcel-1",
            "Complaint-1",
        ] {
            assert!(StreamName::parse(corrupt).is_err(), "{corrupt}");
            assert!(id_in(corrupt, Category::Complaint).is_err(), "{corrupt}");
        }
        assert!(id_in("contractor-c1", Category::Complaint).is_err());
        assert_eq!(id_in("complaint-abc", Category::Complaint), Ok("abc"));
        let not_a_complaint = StreamName::parse("complaint-abc").unwrap_or_else(|e| panic!("{e}"));
        assert!(not_a_complaint.complaint_id().is_err());
        let contractor = StreamName::parse("contractor-c1").unwrap_or_else(|e| panic!("{e}"));
        assert!(contractor.complaint_id().is_err());
    }
}
