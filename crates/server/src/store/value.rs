//! Values crossing the seam: `Param` into a statement, `Cell` out of a row.

use crate::error::StoreError;

/// A statement parameter. Integers are 64-bit on both stores (`BIGINT` in PostgreSQL).
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Bool(bool),
    Text(&'a str),
    Blob(&'a [u8]),
    /// A list of ids, for PostgreSQL's `= ANY($n)` (SQLite has no arrays; never bound there).
    Ints(&'a [i64]),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

/// Ids and counters are `u64` in the domain and at most `i64::MAX` by construction (the API
/// refuses larger cursors), stored as signed 64-bit integers.
impl From<u64> for Param<'_> {
    fn from(v: u64) -> Self {
        Self::Int(v.min(i64::MAX as u64) as i64)
    }
}

impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Self::Text(v)
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Self::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Self::Blob(v)
    }
}

impl<'a> From<&'a Vec<u8>> for Param<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Self::Blob(v)
    }
}

impl<'a> From<&'a [i64]> for Param<'a> {
    fn from(v: &'a [i64]) -> Self {
        Self::Ints(v)
    }
}

impl<'a, T: Into<Param<'a>>> From<Option<T>> for Param<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// `params![a, b]`: a parameter list for `Sql::query` / `Sql::execute`.
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        &[$($crate::store::Param::from($p)),*][..]
    };
}
pub(crate) use params;

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Blob(Vec<u8>),
}

/// A result row; columns by position, as selected.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell, StoreError> {
        self.0.get(i).ok_or(StoreError::Column {
            index: i,
            expected: "a column",
        })
    }

    fn wrong(i: usize, expected: &'static str) -> StoreError {
        StoreError::Column { index: i, expected }
    }

    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.cell(i)? {
            Cell::Int(v) => Ok(*v),
            _ => Err(Self::wrong(i, "an integer")),
        }
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            _ => Err(Self::wrong(i, "an integer or null")),
        }
    }

    /// An id or counter (never negative in a sound database).
    pub fn id(&self, i: usize) -> Result<u64, StoreError> {
        u64::try_from(self.int(i)?).map_err(|_| Self::wrong(i, "a non-negative integer"))
    }

    /// SQLite stores booleans as integers, PostgreSQL as booleans: both read as `bool`.
    pub fn bool(&self, i: usize) -> Result<bool, StoreError> {
        match self.cell(i)? {
            Cell::Bool(v) => Ok(*v),
            Cell::Int(v) => Ok(*v != 0),
            _ => Err(Self::wrong(i, "a boolean")),
        }
    }

    pub fn text(&self, i: usize) -> Result<&str, StoreError> {
        match self.cell(i)? {
            Cell::Text(v) => Ok(v),
            _ => Err(Self::wrong(i, "text")),
        }
    }

    pub fn string(&self, i: usize) -> Result<String, StoreError> {
        self.text(i).map(str::to_owned)
    }

    pub fn blob(&self, i: usize) -> Result<&[u8], StoreError> {
        match self.cell(i)? {
            Cell::Blob(v) => Ok(v),
            _ => Err(Self::wrong(i, "bytes")),
        }
    }

    /// A column holding a wire name (`EventKind`, `Metric`, ...).
    pub fn parse<T: std::str::FromStr>(&self, i: usize) -> Result<T, StoreError> {
        let text = self.text(i)?;
        text.parse()
            .map_err(|_| StoreError::Corrupt(format!("value {text:?} in column {i}")))
    }
}
