//! Positions, versions and limits as both SQL backends keep them: signed 64-bit integers.

use crate::StoreError;

/// Converts a stored integer that must not be negative, such as a version or a position.
pub(crate) fn stored_count(value: i64, position: u64, column: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        position,
        reason: format!("{column} is negative: {value}"),
    })
}

/// An event row's position, read first so that every later failure can name the row it concerns.
pub(crate) fn row_position(raw: Result<i64, sqlx::Error>) -> Result<u64, StoreError> {
    let raw = raw.map_err(|error| StoreError::Corrupt {
        position: 0,
        reason: format!("position cannot be read: {error}"),
    })?;
    stored_count(raw, 0, "position")
}

/// Converts a caller's bound (a position, a version or a limit) into an SQL BIGINT. Bounds
/// beyond `i64::MAX` cannot match any stored row anyway, so saturating keeps the query correct.
pub(crate) fn bound_to_sql(bound: u64) -> i64 {
    i64::try_from(bound).unwrap_or(i64::MAX)
}

pub(crate) fn limit_to_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
