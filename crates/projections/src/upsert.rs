//! Multi-row upserts: one `INSERT … VALUES (…), (…) ON CONFLICT …` for many rows.
//!
//! Each read model declares the upserts of its own tables with [`MultiRowUpsert`]; the batch
//! writes them with [`write_rows`] at its end. This module depends on nothing but the database
//! helpers, so the read models and the batch both use it without using each other.

use sqlx::AnyConnection;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use crate::ProjectionError;
use crate::database::row_values;

/// Rows per multi-row statement. Each statement is a round trip (on SQLite a hop to sqlx's
/// worker thread and back, which waits for a core when the machine is busy), so a catch-up batch
/// of 10,000 events writes its visit rows in about 36 statements rather than 143. The full-size
/// statement is prepared once and reused from sqlx's statement cache; 256 rows of the widest
/// table (about twenty values) stay far below SQLite's 32,766 and PostgreSQL's 65,535 bound
/// values.
pub(crate) const ROWS_PER_STATEMENT: usize = 256;

/// A multi-row `INSERT … VALUES (…), (…) ON CONFLICT …` written once, for any number of rows.
pub(crate) struct MultiRowUpsert {
    /// `INSERT INTO table (columns)`.
    pub(crate) insert: &'static str,
    /// Values per row.
    pub(crate) width: usize,
    /// `ON CONFLICT … DO UPDATE …`.
    pub(crate) on_conflict: &'static str,
}

impl MultiRowUpsert {
    fn statement(&self, connection: &AnyConnection, rows: usize) -> String {
        format!(
            "{} VALUES {} {}",
            self.insert,
            row_values(connection, rows, self.width),
            self.on_conflict
        )
    }
}

pub(crate) type AnyQuery<'q> = Query<'q, sqlx::Any, AnyArguments>;

/// Writes `rows` with `upsert`, `ROWS_PER_STATEMENT` at a time, each bound by `bind`.
pub(crate) async fn write_rows<R>(
    connection: &mut AnyConnection,
    upsert: &MultiRowUpsert,
    rows: &[R],
    bind: impl for<'q> Fn(AnyQuery<'q>, &R) -> AnyQuery<'q>,
) -> Result<(), ProjectionError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let statement = upsert.statement(connection, chunk.len());
        let query = chunk
            .iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(statement)), &bind);
        query.execute(&mut *connection).await?;
    }
    Ok(())
}
