//! Every row of every read model, as text: what two builds of the same log must agree on (a
//! rebuild and the models it replaces, an online generation and an offline rebuild of it).

use std::collections::BTreeMap;

use sqlx::Row;

use crate::{Backend, ProjectionError, ReadModelDatabase};

/// A generation's read models, table by table: every table a reset empties, the shared checkpoint
/// included (not the delivery outbox, which rebuilds leave alone). Each row is its columns as
/// text in column order: on SQLite as SQL literals (`quote`), so that the integer 1 and the text
/// '1' differ as they do in the file; on PostgreSQL, whose columns have one type each, cast to
/// text (NULL as `None`). Rows are sorted, so equal models give equal snapshots. The values are
/// for comparing two snapshots from one backend, not for reading: the two backends spell them
/// differently.
pub type Snapshot = BTreeMap<&'static str, Vec<Vec<Option<String>>>>;

impl ReadModelDatabase {
    /// Reads every row of every read model in this database (its generation, as opened).
    pub async fn snapshot(&self) -> Result<Snapshot, ProjectionError> {
        let mut snapshot = Snapshot::new();
        for table in crate::runner::derived_tables() {
            let columns = self.columns(table).await?;
            let select = columns
                .iter()
                .map(|column| match self.backend() {
                    Backend::Sqlite => format!("quote({column}) AS {column}"),
                    Backend::Postgres => format!("CAST({column} AS TEXT) AS {column}"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            // On SQLite a later generation's connections attach generation 0's file: `main` is
            // this generation's, so a table missing here is not read from there.
            let from = match self.backend() {
                Backend::Sqlite => format!("main.{table}"),
                Backend::Postgres => table.to_owned(),
            };
            let found = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {select} FROM {from}")))
                .fetch_all(self.pool())
                .await?;
            let mut rows = found
                .iter()
                .map(|row| {
                    (0..columns.len())
                        .map(|index| row.try_get::<Option<String>, _>(index))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            rows.sort();
            snapshot.insert(table, rows);
        }
        Ok(snapshot)
    }

    /// `table`'s columns in order, in this database's generation.
    async fn columns(&self, table: &str) -> Result<Vec<String>, ProjectionError> {
        let sql = match self.backend() {
            Backend::Sqlite => "SELECT name FROM pragma_table_info($1, 'main') ORDER BY cid",
            Backend::Postgres => {
                "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 \
                 ORDER BY ordinal_position"
            }
        };
        let columns: Vec<String> = sqlx::query_scalar(sql)
            .bind(table)
            .fetch_all(self.pool())
            .await?;
        if columns.is_empty() {
            return Err(ProjectionError::MissingTable(table.to_owned()));
        }
        Ok(columns)
    }
}
