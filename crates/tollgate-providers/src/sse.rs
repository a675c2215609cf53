//! Turning an upstream SSE response into a canonical chunk stream, through a provider's pure
//! [`StreamDecoder`].

use std::collections::VecDeque;
use std::pin::Pin;

use futures::StreamExt;
use tokio::time::timeout_at;
use tollgate_types::ports::{ProviderError, ProviderErrorKind};

use crate::http::{Deadlines, timeout, transport_error};

/// A provider's stream translation: a pure state machine from SSE events to canonical chunks.
/// It accumulates what it needs (ids, usage, tool-call indexes) across events.
pub trait StreamDecoder: Send + 'static {
    /// What the stream yields: canonical chat chunks, or legacy completion chunks.
    type Item: Send + 'static;

    /// One SSE event (`event` is empty when the upstream sends only `data:` lines). Returns the
    /// chunks it produces, often none or one. An `Err` ends the stream with that error (also
    /// used for error events the upstream sends mid-stream).
    fn on_event(&mut self, event: &str, data: &str) -> Result<Vec<Self::Item>, ProviderError>;

    /// Whether the decoder has seen the upstream's own end-of-stream marker; the stream is cut
    /// there even if the connection stays open.
    fn is_done(&self) -> bool;

    /// The upstream closed the stream. Returns the final chunks (e.g. usage), or an error when
    /// the stream ended before its end marker (a truncated answer must not look complete).
    fn on_end(&mut self) -> Result<Vec<Self::Item>, ProviderError>;
}

/// A decoded stream; for chat decoders this is a [`tollgate_types::ports::ChunkStream`].
pub type DecodedStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, ProviderError>> + Send>>;

/// Decodes an SSE response with `decoder`. The stream ends with the decoder's final chunks, or
/// with one `Err` item (transport failure, garbage, deadline, upstream error event); it never
/// hangs past the total deadline. Dropping it drops the response, which aborts the upstream call.
pub fn decode<D: StreamDecoder>(
    provider: &'static str,
    response: reqwest::Response,
    decoder: D,
    deadlines: Deadlines,
) -> DecodedStream<D::Item> {
    let events = eventsource_stream::Eventsource::eventsource(response.bytes_stream());
    let state = DecodeState { events, decoder, pending: VecDeque::new(), finished: false, yielded: false };
    Box::pin(futures::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                st.yielded = true;
                return Some((item, st));
            }
            if st.finished {
                return None;
            }
            let next = if st.decoder.is_done() {
                None
            } else {
                // Until the first chunk the first-byte deadline holds (time to first token): an
                // upstream that sends its headers at once and then nothing is as stuck as one
                // that sends nothing, and the router can still try another deployment.
                let (deadline, what) = if st.yielded {
                    (deadlines.total, "the stream did not complete before the total deadline")
                } else {
                    (deadlines.first_byte, "no first chunk before the first-byte deadline")
                };
                match timeout_at(deadline, st.events.next()).await {
                    Err(_) => {
                        st.fail(timeout(provider, what));
                        continue;
                    }
                    Ok(next) => next,
                }
            };
            match next {
                None => {
                    st.finished = true;
                    match st.decoder.on_end() {
                        Ok(chunks) => st.pending.extend(chunks.into_iter().map(Ok)),
                        Err(e) => st.pending.push_back(Err(e)),
                    }
                }
                // We parse the JSON ourselves, so a reqwest error here is always the connection
                // (reqwest labels a broken chunked body a "decode" error).
                Some(Err(eventsource_stream::EventStreamError::Transport(e))) if e.is_timeout() => {
                    st.fail(transport_error(provider, &e));
                }
                Some(Err(eventsource_stream::EventStreamError::Transport(_))) => st.fail(truncated(provider)),
                Some(Err(e)) => st.fail(ProviderError::invalid_response(provider, e)),
                Some(Ok(ev)) => match st.decoder.on_event(&ev.event, &ev.data) {
                    Ok(chunks) => st.pending.extend(chunks.into_iter().map(Ok)),
                    Err(e) => st.fail(e),
                },
            }
        }
    }))
}

struct DecodeState<E, D, I> {
    events: E,
    decoder: D,
    pending: VecDeque<Result<I, ProviderError>>,
    finished: bool,
    /// An item went out: from then on only the total deadline applies.
    yielded: bool,
}

impl<E, D, I> DecodeState<E, D, I> {
    /// Ends the stream with `e` as its last item.
    fn fail(&mut self, e: ProviderError) {
        self.pending.push_back(Err(e));
        self.finished = true;
    }
}

/// The error a decoder returns when the upstream closed the stream before its end marker.
pub fn truncated(provider: &'static str) -> ProviderError {
    ProviderError::new(
        provider,
        ProviderErrorKind::Connect,
        "the upstream closed the stream before it was complete",
    )
}

/// Parses one event's JSON `data`, classifying garbage as an invalid response.
pub fn parse_data<T: serde::de::DeserializeOwned>(
    provider: &'static str,
    data: &str,
) -> Result<T, ProviderError> {
    serde_json::from_str(data)
        .map_err(|e| ProviderError::invalid_response(provider, format!("bad stream event: {e}")))
}

/// Helpers for the stream decoders' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use tollgate_types::ChatChunk;
    use tollgate_types::ports::ProviderError;

    use super::StreamDecoder;

    /// Feeds `(event, data)` pairs in order; the first error is returned as is.
    pub fn feed<D: StreamDecoder>(d: &mut D, events: &[(&str, &str)]) -> Result<Vec<D::Item>, ProviderError> {
        let mut out = Vec::new();
        for (event, data) in events {
            out.extend(d.on_event(event, data)?);
        }
        Ok(out)
    }

    /// The streamed text, all choices' content deltas in order.
    pub fn text_of(chunks: &[ChatChunk]) -> String {
        chunks.iter().flat_map(|c| &c.choices).filter_map(|c| c.delta.content.as_deref()).collect()
    }
}
