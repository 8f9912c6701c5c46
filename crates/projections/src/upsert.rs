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
/// of 25,000 events writes its visit rows in about 90 statements rather than 360. The full-size
/// statement is prepared once and reused from sqlx's statement cache; 256 rows of the widest
/// table (about twenty values) stay far below SQLite's 32,766 and PostgreSQL's 65,535 bound
/// values.
pub(crate) const ROWS_PER_STATEMENT: usize = 256;

/// Splits `rows` into the chunks that are written one statement each, in order: as many
/// [`ROWS_PER_STATEMENT`] as fit, then what is left (fewer than 256) written digit by digit in
/// base 8, one statement of 64·k rows (k ≤ 3), one of 8·k (k ≤ 7) and one of up to 7.
///
/// Every row count is a different statement text, and sqlx keeps 100 prepared statements per
/// connection (least recently used out first). Writing each batch's n rows as one statement of n
/// made about 50 texts per table at intake (a batch holds whatever arrived since the last), so
/// the four per-complaint tables alone overflowed the cache and most statements were parsed and
/// planned again. With these chunks a table has at most 18 texts (256; 64, 128, 192; 8 to 56; 1
/// to 7), 15 of them for batches up to 64 rows, which take at most two statements.
pub(crate) fn statement_chunks<R>(rows: &[R]) -> impl Iterator<Item = &[R]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let length = match rest.len() {
            0 => return None,
            left if left >= ROWS_PER_STATEMENT => ROWS_PER_STATEMENT,
            left if left >= 64 => left / 64 * 64,
            left if left >= 8 => left / 8 * 8,
            left => left,
        };
        let (chunk, after) = rest.split_at(length);
        rest = after;
        Some(chunk)
    })
}

/// Splits `keys` for `… IN (…)` lists of fixed lengths: chunks of [`ROWS_PER_STATEMENT`], the
/// last padded up to a power of two by repeating its last key (a key listed twice matches the
/// same rows once), so that each such statement has at most nine texts (1, 2, 4, … 256) and
/// stays in sqlx's statement cache (see [`statement_chunks`]). Each chunk is one statement.
pub(crate) fn in_list_chunks<K>(keys: &[K]) -> impl Iterator<Item = Vec<&K>> {
    keys.chunks(ROWS_PER_STATEMENT).map(|chunk| {
        let mut padded: Vec<&K> = chunk.iter().collect();
        if let Some(last) = chunk.last() {
            padded.resize(chunk.len().next_power_of_two(), last);
        }
        padded
    })
}

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

/// Writes `rows` with `upsert` in the chunks of [`statement_chunks`], each row bound by `bind`.
pub(crate) async fn write_rows<R>(
    connection: &mut AnyConnection,
    upsert: &MultiRowUpsert,
    rows: &[R],
    bind: impl for<'q> Fn(AnyQuery<'q>, &R) -> AnyQuery<'q>,
) -> Result<(), ProjectionError> {
    for chunk in statement_chunks(rows) {
        let statement = upsert.statement(connection, chunk.len());
        let query = chunk
            .iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(statement)), &bind);
        query.execute(&mut *connection).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use sqlx::Connection as _;

    use super::*;

    #[test]
    fn statement_chunks_write_every_row_once_in_few_shapes() {
        let mut shapes = BTreeSet::new();
        for n in 0..=2_000 {
            let rows: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = statement_chunks(&rows).collect();
            assert_eq!(chunks.concat(), rows, "{n} rows, in order, each once");
            if n <= 64 {
                assert!(
                    chunks.len() <= 2,
                    "{n} rows take {} statements",
                    chunks.len()
                );
            }
            shapes.extend(chunks.iter().map(|chunk| chunk.len()));
        }
        let expected: BTreeSet<usize> = (1..8)
            .chain((1..8).map(|k| 8 * k))
            .chain([64, 128, 192, ROWS_PER_STATEMENT])
            .collect();
        assert_eq!(shapes, expected);
    }

    #[test]
    fn in_lists_are_padded_with_their_last_key_to_a_power_of_two() {
        let mut shapes = BTreeSet::new();
        for n in 0..=700 {
            let keys: Vec<usize> = (0..n).collect();
            let chunks: Vec<Vec<&usize>> = in_list_chunks(&keys).collect();
            for (chunk, original) in chunks.iter().zip(keys.chunks(ROWS_PER_STATEMENT)) {
                let (listed, padding) = chunk.split_at(original.len());
                assert!(listed.iter().copied().eq(original.iter()));
                assert!(padding.iter().all(|key| Some(*key) == original.last()));
                assert!(chunk.len().is_power_of_two() && chunk.len() <= ROWS_PER_STATEMENT);
                shapes.insert(chunk.len());
            }
            assert_eq!(chunks.len(), n.div_ceil(ROWS_PER_STATEMENT));
        }
        assert_eq!(shapes.len(), 9, "1, 2, 4, … 256: {shapes:?}");
    }

    const ADD: MultiRowUpsert = MultiRowUpsert {
        insert: "INSERT INTO totals (key, total)",
        width: 2,
        on_conflict: "ON CONFLICT (key) DO UPDATE SET total = totals.total + excluded.total",
    };

    #[tokio::test]
    async fn write_rows_adds_each_row_once_whatever_their_number() {
        sqlx::any::install_default_drivers();
        let mut connection = sqlx::AnyConnection::connect("sqlite::memory:")
            .await
            .unwrap_or_else(|error| panic!("an in-memory database opens: {error}"));
        for n in [0_i64, 1, 7, 8, 9, 63, 64, 65, 200, 255, 256, 257, 600] {
            sqlx::query("DROP TABLE IF EXISTS totals")
                .execute(&mut connection)
                .await
                .unwrap_or_else(|error| panic!("drop: {error}"));
            sqlx::query("CREATE TABLE totals (key INTEGER PRIMARY KEY, total INTEGER NOT NULL)")
                .execute(&mut connection)
                .await
                .unwrap_or_else(|error| panic!("create: {error}"));
            let rows: Vec<(i64, i64)> = (0..n).map(|key| (key, key + 1)).collect();
            // Twice: the second time every row meets its conflict and adds to it.
            for _ in 0..2 {
                write_rows(&mut connection, &ADD, &rows, |query, (key, total)| {
                    query.bind(*key).bind(*total)
                })
                .await
                .unwrap_or_else(|error| panic!("{n} rows written: {error}"));
            }
            let (count, sum): (i64, Option<i64>) =
                sqlx::query_as("SELECT COUNT(*), SUM(ABS(total - 2 * (key + 1))) FROM totals")
                    .fetch_one(&mut connection)
                    .await
                    .unwrap_or_else(|error| panic!("read back: {error}"));
            assert_eq!((count, sum.unwrap_or(0)), (n, 0), "{n} rows");
        }
    }
}
