//! Server-sent events to the client in OpenAI's framing: `data: <json>\n\n` per chunk and a
//! final `data: [DONE]\n\n`. A failure mid-stream ends the stream with one
//! `data: {"error":{...}}` event instead (what OpenAI sends and its SDKs raise), never a hang.
//!
//! Each chunk is written as soon as it arrives; nothing is buffered.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt, stream};
use serde::Serialize;
use tollgate_types::GatewayError;

use crate::errors::openai_error_json;

/// Frames a stream of chunks as an SSE response.
pub fn response<S, T>(chunks: S) -> Response
where
    S: Stream<Item = Result<T, GatewayError>> + Send + 'static,
    T: Serialize + Send + 'static,
{
    let events = chunks.map(Some).chain(stream::once(async { None })).scan(false, |failed, item| {
        let out = match (*failed, item) {
            (true, _) => None,
            (false, Some(Ok(chunk))) => Some(match serde_json::to_vec(&chunk) {
                Ok(json) => frame(&json),
                Err(_) => {
                    *failed = true;
                    frame(&openai_error_json(&GatewayError::internal("a chunk could not be encoded")))
                }
            }),
            (false, Some(Err(e))) => {
                *failed = true;
                Some(frame(&openai_error_json(&e)))
            }
            (false, None) => Some(Bytes::from_static(b"data: [DONE]\n\n")),
        };
        futures::future::ready(out.map(Ok::<_, Infallible>))
    });
    let mut resp = Response::new(Body::from_stream(events));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell nginx-style proxies in front of the gateway not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

fn frame(json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + 8);
    b.put_slice(b"data: ");
    b.put_slice(json);
    b.put_slice(b"\n\n");
    b.freeze()
}
