//! Store errors → client errors. The store says what kind of failure happened; this module
//! decides what a client may learn from it: not-found and conflicts are passed on (naming the
//! resource), database details of unavailability and internal failures are logged here and
//! replaced by a generic message.

use std::fmt::Display;
use std::time::Duration;

use tollgate_types::ports::store::StoreError;
use tollgate_types::{ErrorKind, GatewayError};

/// Maps a store error to the client's error.
pub fn store_error(e: StoreError) -> GatewayError {
    match e {
        StoreError::NotFound(what) => GatewayError::new(ErrorKind::NotFound, format!("{what} not found")),
        StoreError::Conflict(msg) => GatewayError::new(ErrorKind::Conflict, msg),
        StoreError::Invalid(msg) => invalid(msg),
        StoreError::Unavailable(detail) => {
            // The detail may name hosts or users: it goes to the operator's log only.
            tracing::error!(error = %detail, "admin: the store is unavailable");
            GatewayError::new(ErrorKind::Unavailable, "The store is unavailable; retry shortly.")
                .with_retry_after(Some(Duration::from_secs(1)))
        }
        StoreError::Internal(detail) => {
            tracing::error!(error = %detail, "admin: store error");
            GatewayError::internal("The gateway hit an internal error; the request id is in x-request-id.")
        }
    }
}

/// The store's validation messages read `field: what is wrong`; keep the field as `param`.
fn invalid(msg: String) -> GatewayError {
    let field = msg
        .split_once(": ")
        .map(|(f, _)| f)
        .filter(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.[]".contains(&b)));
    let mut err = GatewayError::invalid_request(msg.clone());
    err.param = field.map(str::to_owned);
    err
}

/// `<what> <id> not found` (404).
pub fn not_found(what: &str, id: impl Display) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("{what} {id} not found"))
}

/// Store results whose not-found should name the resource asked for.
pub(crate) trait StoreResultExt<T> {
    /// Maps the error; a `NotFound` becomes `<what> <id> not found`.
    fn or_not_found(self, what: &str, id: impl Display) -> Result<T, GatewayError>;
    /// Maps the error with [`store_error`].
    fn client(self) -> Result<T, GatewayError>;
}

impl<T> StoreResultExt<T> for Result<T, StoreError> {
    fn or_not_found(self, what: &str, id: impl Display) -> Result<T, GatewayError> {
        self.map_err(|e| match e {
            StoreError::NotFound(_) => not_found(what, id),
            other => store_error(other),
        })
    }

    fn client(self) -> Result<T, GatewayError> {
        self.map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_statuses_without_leaking_details() {
        let e = store_error(StoreError::NotFound("project"));
        assert_eq!((e.status(), e.message.as_str()), (404, "project not found"));
        assert_eq!(store_error(StoreError::Conflict("name \"x\" exists".into())).status(), 409);
        let e = store_error(StoreError::Invalid("name: must be 1-200 characters".into()));
        assert_eq!((e.status(), e.param.as_deref()), (400, Some("name")));
        let e = store_error(StoreError::Unavailable("connect to db.internal:5432 refused".into()));
        assert_eq!(e.status(), 503);
        assert!(!e.message.contains("db.internal"));
        let e = store_error(StoreError::Internal("syntax error at SELECT".into()));
        assert_eq!(e.status(), 500);
        assert!(!e.message.contains("SELECT"));
        let e = Err::<(), _>(StoreError::NotFound("record")).or_not_found("key", "k1").unwrap_err();
        assert_eq!(e.message, "key k1 not found");
    }
}
