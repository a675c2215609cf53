//! Decoding request bodies: content type (415), size limit (413), JSON with the failing field
//! named (400). Every failure is a [`GatewayError`] in the caller's dialect.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;
use tollgate_types::{ErrorKind, GatewayError};

use crate::app::AppState;
use crate::errors::ApiError;

/// A JSON body decoded into `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.max_body_bytes;
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(GatewayError::new(
                ErrorKind::UnsupportedMediaType,
                "Content-Type must be application/json",
            )
            .into());
        }
        let too_large = || {
            ApiError(GatewayError::new(
                ErrorKind::PayloadTooLarge,
                format!("The request body is larger than this gateway's limit of {limit} bytes."),
            ))
        };
        if req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > limit)
        {
            return Err(too_large());
        }
        let body: Body = req.into_body();
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
            Err(_) => {
                return Err(GatewayError::invalid_request("The request body could not be read.").into());
            }
        };
        decode(&bytes).map(JsonBody).map_err(ApiError)
    }
}

/// Decodes JSON; the error names the field at fault (`messages[0].role: unknown variant ...`).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GatewayError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return GatewayError::invalid_request(format!(
                "The request body is not valid JSON ({inner}). Send a JSON object."
            ));
        }
        if path == "." {
            GatewayError::invalid_request(format!("Invalid request body: {inner}"))
        } else {
            GatewayError::invalid_field(&path, inner)
        }
    })
}

#[cfg(test)]
mod tests {
    use tollgate_types::ChatRequest;

    use super::*;

    #[test]
    fn decode_errors_name_the_field() {
        let e = decode::<ChatRequest>(br#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"), "{}", e.message);
        let e = decode::<ChatRequest>(br#"{"model":"m","messages":[],"temperature":"hot"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = decode::<ChatRequest>(br#"{"messages":[]}"#).unwrap_err();
        assert!(e.message.contains("model"), "{}", e.message);
        let e = decode::<ChatRequest>(b"{nope").unwrap_err();
        assert!(e.message.contains("not valid JSON"));
    }
}
