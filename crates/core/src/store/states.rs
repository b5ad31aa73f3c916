//! The saved states as SQLite values: the enums the window sees (`ipc.rs`) are what the cache
//! stores, under the names serde gives them. A stored name no variant has is an error that
//! says what it is, never a default: a damaged or newer cache must not read as something else.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::de::{DeserializeOwned, IntoDeserializer, value};

use crate::ipc::{BuildStatus, Connection, NotificationKind, NotificationState};

#[derive(Debug, thiserror::Error)]
#[error("unknown {what} {value:?} in the local database")]
struct UnknownState {
    what: &'static str,
    value: String,
}

/// Reads a stored name through serde, which declares the names once for the cache and the
/// window alike.
fn parse<T: DeserializeOwned>(what: &'static str, stored: ValueRef<'_>) -> FromSqlResult<T> {
    let name = stored.as_str()?;
    T::deserialize(IntoDeserializer::<value::Error>::into_deserializer(name)).map_err(|_| {
        FromSqlError::Other(Box::new(UnknownState {
            what,
            value: name.to_owned(),
        }))
    })
}

macro_rules! stored_as_name {
    ($ty:ty, $what:literal) => {
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $ty {
            fn column_result(stored: ValueRef<'_>) -> FromSqlResult<Self> {
                parse($what, stored)
            }
        }
    };
}

stored_as_name!(Connection, "connection state");
stored_as_name!(NotificationState, "notification state");
stored_as_name!(BuildStatus, "build status");
stored_as_name!(NotificationKind, "notification kind");

#[cfg(test)]
mod tests {
    use rusqlite::Connection as Db;

    use super::*;

    /// Each variant goes in and comes back as itself, under serde's name for it.
    fn round_trips<T>(all: &[T])
    where
        T: ToSql + FromSql + serde::Serialize + PartialEq + std::fmt::Debug,
    {
        let db = Db::open_in_memory().unwrap();
        for v in all {
            let (back, text): (T, String) = db
                .query_row("SELECT ?1, ?1", [v], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap();
            assert_eq!(&back, v);
            assert_eq!(serde_json::to_value(v).unwrap(), text.as_str());
        }
    }

    #[test]
    fn every_state_is_stored_under_its_serde_name() {
        use Connection as C;
        use NotificationState as N;
        round_trips(&[
            C::Connecting,
            C::Connected,
            C::Polling,
            C::Offline,
            C::SignedOut,
            C::StreamStopped,
        ]);
        round_trips(&[
            N::Pending,
            N::Sending,
            N::Held,
            N::Shown,
            N::Suppressed,
            N::Digested,
            N::Failed,
        ]);
        round_trips(&[
            NotificationKind::Quota,
            NotificationKind::BuildRejected,
            NotificationKind::Notice,
            NotificationKind::PlanChanged,
            NotificationKind::Digest,
            NotificationKind::PaceWarning,
            NotificationKind::Runaway,
            NotificationKind::Refill,
        ]);
        round_trips(&[
            BuildStatus::Accepted,
            BuildStatus::Overage,
            BuildStatus::Rejected,
        ]);
    }

    #[test]
    fn an_unknown_stored_state_is_an_error_that_names_it() {
        let db = Db::open_in_memory().unwrap();
        let err = db
            .query_row("SELECT 'sent'", [], |r| r.get::<_, NotificationState>(0))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("unknown notification state \"sent\""),
            "{text}"
        );
        let err = db
            .query_row("SELECT 'online'", [], |r| r.get::<_, Connection>(0))
            .unwrap_err();
        assert!(err.to_string().contains("\"online\""), "{err}");
    }
}
