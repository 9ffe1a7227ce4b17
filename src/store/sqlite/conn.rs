//! The shared SQL on a synchronous SQLite connection (rusqlite).
//!
//! The SQL modules are written once, as `async fn`s generic over [`Conn`],
//! for both backends. On SQLite they run on a plain `rusqlite` connection:
//! each statement executes right away on the calling thread, so the futures
//! are ready at their first poll and are driven with `now_or_never`. That is
//! the point of it: sqlx's SQLite driver sends every statement to a worker
//! thread and back, two thread hand-offs per statement, which cost far more
//! than the statements themselves (DESIGN §12).
//!
//! Statements are prepared once per connection and cached; `$N`
//! placeholders are bound by their number, whatever order they appear in
//! (rewritten to SQLite's `?N`).

use crate::store::rows::RowExt;
use crate::store::sql::{Arg, Conn};
use crate::store::StoreError;
use async_trait::async_trait;
use rusqlite::types::{Value, ValueRef};
use std::borrow::Cow;
use std::sync::Arc;

/// Statements each connection keeps prepared.
pub(super) const STATEMENT_CACHE_CAPACITY: usize = 128;

/// One result row, owned (a rusqlite row borrows its statement).
#[derive(Debug)]
pub struct OwnedRow {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl OwnedRow {
    fn value(&self, column: &str) -> Result<&Value, StoreError> {
        self.columns
            .iter()
            .position(|name| name == column)
            .map(|i| &self.values[i])
            .ok_or_else(|| StoreError::Corrupt(format!("no column {column}")))
    }
}

impl RowExt for OwnedRow {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.opt_text(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL")))
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Text(text) => Ok(Some(text.clone())),
            other => Err(StoreError::Corrupt(format!(
                "{column} is not text: {other:?}"
            ))),
        }
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.opt_int(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL")))
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Integer(n) => Ok(Some(*n)),
            other => Err(StoreError::Corrupt(format!(
                "{column} is not an integer: {other:?}"
            ))),
        }
    }
}

fn sqlite_error(error: rusqlite::Error) -> StoreError {
    StoreError::Sqlite(error.to_string())
}

/// `sql` with each `$N` placeholder written `?N`, SQLite's numbered form,
/// in which parameter index N is placeholder N whatever order the
/// placeholders appear in. Binding then needs no name lookup:
/// `sqlite3_bind_parameter_name` walks a list, so asking it for every
/// index made binding a statement of N placeholders cost N² steps, and a
/// staged page of reconciliation records (6,500 placeholders) held its
/// thread for most of a second. Quoted text and `--` comments are left
/// alone (an apostrophe in a comment must not hide the placeholders after
/// it).
fn numbered(sql: &str) -> Cow<'_, str> {
    let bytes = sql.as_bytes();
    let mut state = Lexed::Code;
    let mut out: Option<Vec<u8>> = None;
    for (i, &b) in bytes.iter().enumerate() {
        let next = bytes.get(i + 1).copied();
        state = match (state, b) {
            (Lexed::Code, b'\'') => Lexed::Quoted,
            (Lexed::Code, b'-') if next == Some(b'-') => Lexed::Comment,
            (Lexed::Code, b'$') if next.is_some_and(|n| n.is_ascii_digit()) => {
                out.get_or_insert_with(|| bytes.to_vec())[i] = b'?';
                Lexed::Code
            }
            (Lexed::Quoted, b'\'') | (Lexed::Comment, b'\n') => Lexed::Code,
            (state, _) => state,
        };
    }
    match out {
        // Only ASCII '$' became ASCII '?': still UTF-8.
        Some(out) => Cow::Owned(String::from_utf8(out).expect("ASCII for ASCII keeps UTF-8")),
        None => Cow::Borrowed(sql),
    }
}

/// Where [`numbered`] is in the SQL text.
#[derive(Clone, Copy)]
enum Lexed {
    Code,
    Quoted,
    Comment,
}

/// Binds `args` to `statement`, prepared from [`numbered`] SQL: index N
/// takes `args[N - 1]`.
fn bind(statement: &mut rusqlite::CachedStatement<'_>, args: &[Arg]) -> Result<(), StoreError> {
    for index in 1..=statement.parameter_count() {
        let arg = args
            .get(index - 1)
            .ok_or_else(|| StoreError::Corrupt(format!("no argument for placeholder ${index}")))?;
        let bound = match arg {
            Arg::Text(value) => statement.raw_bind_parameter(index, value),
            Arg::Int(value) => statement.raw_bind_parameter(index, value),
        };
        bound.map_err(sqlite_error)?;
    }
    Ok(())
}

fn owned(value: ValueRef<'_>) -> Value {
    value.into()
}

#[async_trait]
impl Conn for rusqlite::Connection {
    type Row = OwnedRow;

    async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        let mut statement = self.prepare_cached(&numbered(sql)).map_err(sqlite_error)?;
        bind(&mut statement, &args)?;
        let changed = statement.raw_execute().map_err(sqlite_error)?;
        Ok(changed as u64)
    }

    async fn fetch_all(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<OwnedRow>, StoreError> {
        let mut statement = self.prepare_cached(&numbered(sql)).map_err(sqlite_error)?;
        bind(&mut statement, &args)?;
        let columns: Arc<[String]> = statement
            .column_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        let width = columns.len();
        let mut rows = statement.raw_query();
        let mut found = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            let values = (0..width)
                .map(|i| row.get_ref(i).map(owned))
                .collect::<Result<Vec<_>, _>>()
                .map_err(sqlite_error)?;
            found.push(OwnedRow {
                columns: columns.clone(),
                values,
            });
        }
        Ok(found)
    }

    async fn execute_script(&mut self, sql: &str) -> Result<(), StoreError> {
        self.execute_batch(sql).map_err(sqlite_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn placeholders_become_numbered_outside_quotes() {
        assert_eq!(
            numbered("SELECT $12, '$1 off', $3 || '$' FROM t WHERE a = $1"),
            "SELECT ?12, '$1 off', ?3 || '$' FROM t WHERE a = ?1"
        );
        assert_eq!(
            numbered("SELECT $1 -- the engine's $2\n, $3 -- $4\n FROM t"),
            "SELECT ?1 -- the engine's $2\n, ?3 -- $4\n FROM t"
        );
        assert_eq!(numbered("SELECT 'it''s $1', $2"), "SELECT 'it''s $1', ?2");
        assert!(matches!(numbered("SELECT 1"), Cow::Borrowed(_)));
    }

    /// Out of order, repeated and far apart, each placeholder takes the
    /// argument of its number.
    #[test]
    fn arguments_bind_by_placeholder_number() {
        let mut conn = rusqlite::Connection::open_in_memory().expect("open");
        let rows = conn
            .fetch_all(
                "SELECT $3 AS c, $1 AS a, $3 || $2 AS cb, '$2' AS literal",
                vec![
                    Arg::Int(Some(1)),
                    Arg::Text(Some("b".into())),
                    Arg::Text(Some("c".into())),
                ],
            )
            .now_or_never()
            .expect("ready")
            .expect("query");
        let row = &rows[0];
        assert_eq!(row.text("c").expect("c"), "c");
        assert_eq!(row.int("a").expect("a"), 1);
        assert_eq!(row.text("cb").expect("cb"), "cb");
        assert_eq!(row.text("literal").expect("literal"), "$2");
        let missing = conn
            .fetch_all("SELECT $2", vec![Arg::Int(Some(1))])
            .now_or_never()
            .expect("ready");
        assert!(
            matches!(missing, Err(StoreError::Corrupt(_))),
            "{missing:?}"
        );
    }
}
