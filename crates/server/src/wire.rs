//! Enums whose variants travel as fixed names, in JSON and in the database.
//!
//! `wire_enum!` declares such an enum with each variant's name beside it, once; the list of
//! variants, `as_str` and every conversion come from that one table, so they cannot disagree,
//! and reading a name back is an error for anything unknown, never a default.

/// A name that is none of an enum's variants: read from the database or given by a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?}")]
pub struct UnknownName {
    /// What the name should have been (`"metric"`, `"event type"`).
    pub what: &'static str,
    pub name: String,
}

/// `wire_enum! { pub enum Name("what it is") { Variant = "wire name", ... } }` declares the enum
/// (Copy, Eq, Hash), `Name::ALL` (every variant, in declaration order), `as_str`, and
/// `Display`, `FromStr` (failing with `UnknownName`), `Serialize`, and a statement `Param`, all
/// through `as_str` (a row reads one back with `Row::parse`).
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $ty:ident($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $name:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $ty {
            $($(#[$vmeta])* $variant,)+
        }

        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: [Self; [$($name),+].len()] = [$(Self::$variant),+];

            /// The name on the wire and in the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::wire::UnknownName;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|v| v.as_str() == name)
                    .ok_or_else(|| $crate::wire::UnknownName {
                        what: $what,
                        name: name.to_owned(),
                    })
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl From<$ty> for $crate::store::Param<'static> {
            fn from(v: $ty) -> Self {
                $crate::store::Param::Text(v.as_str())
            }
        }
    };
}

pub(crate) use wire_enum;

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;
    use std::fmt::{Debug, Display};
    use std::str::FromStr;

    use rusqlite::Connection;
    use serde::Serialize;

    use crate::store::{Param, Sql, params};

    use super::*;

    /// Every variant's name is its own, reads back (parsed, from JSON's view, from SQLite), and
    /// `unknown` fails both ways with an error that names it.
    pub(crate) fn check_names<T>(all: &[T], unknown: &str)
    where
        T: Copy + Debug + PartialEq + Display + Serialize + Into<Param<'static>>,
        T: FromStr<Err = UnknownName>,
    {
        let mut conn = Connection::open_in_memory().unwrap();
        let sql: &mut dyn Sql = &mut conn;
        let mut seen = HashSet::new();
        for &v in all {
            let name = v.to_string();
            assert!(seen.insert(name.clone()), "{name} named twice");
            assert_eq!(name.parse::<T>(), Ok(v));
            assert_eq!(serde_json::to_value(v).unwrap(), name.as_str());
            let row = sql.query_one("row", "SELECT $1", &[v.into()]).unwrap();
            assert_eq!(row.parse::<T>(0).unwrap(), v);
        }
        assert_eq!(unknown.parse::<T>().unwrap_err().name, unknown);
        let row = sql.query_one("row", "SELECT $1", params![unknown]).unwrap();
        let err = row.parse::<T>(0).unwrap_err();
        assert!(err.to_string().contains(&format!("{unknown:?}")), "{err}");
    }

    wire_enum! {
        enum Colour("colour") {
            Red = "red",
            DarkGreen = "dark green",
        }
    }

    #[test]
    fn the_table_gives_every_conversion() {
        assert_eq!(Colour::ALL, [Colour::Red, Colour::DarkGreen]);
        assert_eq!(Colour::DarkGreen.as_str(), "dark green");
        assert_eq!(
            "blue".parse::<Colour>().unwrap_err().to_string(),
            "unknown colour \"blue\""
        );
        check_names(&Colour::ALL, "Red");
    }
}
