//! Checks on a decoded request that serde cannot express. Each failure names the field.

use tollgate_types::{
    ChatRequest, CompletionRequest, EmbeddingsRequest, GatewayError, MessageContent, Role, ToolChoice,
};

/// The most choices one request may ask for.
const MAX_N: u32 = 128;

pub(super) fn chat(req: &ChatRequest) -> Result<(), GatewayError> {
    model(&req.model)?;
    if req.messages.is_empty() {
        return Err(GatewayError::invalid_field("messages", "must contain at least one message"));
    }
    for (i, m) in req.messages.iter().enumerate() {
        let empty = match &m.content {
            None => true,
            Some(MessageContent::Text(_)) => false,
            Some(MessageContent::Parts(p)) => p.is_empty(),
        };
        match m.role {
            Role::Assistant if empty && m.tool_calls.as_ref().is_none_or(Vec::is_empty) => {
                return Err(GatewayError::invalid_field(
                    &format!("messages[{i}].content"),
                    "an assistant message needs content or tool_calls",
                ));
            }
            Role::Tool if m.tool_call_id.as_deref().is_none_or(str::is_empty) => {
                return Err(GatewayError::invalid_field(
                    &format!("messages[{i}].tool_call_id"),
                    "a tool message must say which call it answers",
                ));
            }
            Role::System | Role::Developer | Role::User | Role::Tool if empty => {
                return Err(GatewayError::invalid_field(&format!("messages[{i}].content"), "is required"));
            }
            _ => {}
        }
    }
    range("temperature", req.temperature, 0.0, 2.0)?;
    range("top_p", req.top_p, 0.0, 1.0)?;
    range("presence_penalty", req.presence_penalty, -2.0, 2.0)?;
    range("frequency_penalty", req.frequency_penalty, -2.0, 2.0)?;
    for (field, v) in [("max_tokens", req.max_tokens), ("max_completion_tokens", req.max_completion_tokens)] {
        if v == Some(0) {
            return Err(GatewayError::invalid_field(field, "must be at least 1"));
        }
    }
    if let Some(n) = req.n
        && !(1..=MAX_N).contains(&n)
    {
        return Err(GatewayError::invalid_field("n", format!("must be between 1 and {MAX_N}")));
    }
    if req.stream_options.is_some() && !req.stream {
        return Err(GatewayError::invalid_field("stream_options", "is only allowed when stream is true"));
    }
    let tools = req.tools.as_deref().unwrap_or_default();
    for (i, t) in tools.iter().enumerate() {
        let name = &t.function.name;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(GatewayError::invalid_field(
                &format!("tools[{i}].function.name"),
                "must be 1-64 characters of a-z, A-Z, 0-9, _ and -",
            ));
        }
    }
    if let Some(ToolChoice::Named(named)) = &req.tool_choice
        && !tools.iter().any(|t| t.function.name == named.function.name)
    {
        return Err(GatewayError::invalid_field(
            "tool_choice",
            format!("names the function {:?}, which is not in tools", named.function.name),
        ));
    }
    Ok(())
}

pub(super) fn embeddings(req: &EmbeddingsRequest) -> Result<(), GatewayError> {
    model(&req.model)?;
    if req.input.is_empty() {
        return Err(GatewayError::invalid_field("input", "must not be empty"));
    }
    if req.dimensions == Some(0) {
        return Err(GatewayError::invalid_field("dimensions", "must be at least 1"));
    }
    Ok(())
}

pub(super) fn completions(req: &CompletionRequest) -> Result<(), GatewayError> {
    model(&req.model)
}

fn model(model: &str) -> Result<(), GatewayError> {
    if model.is_empty() {
        return Err(GatewayError::invalid_field("model", "is required"));
    }
    Ok(())
}

fn range(field: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<(), GatewayError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => {
            Err(GatewayError::invalid_field(field, format!("must be between {lo} and {hi}, got {x}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> ChatRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (serde_json::json!({"model": "m", "messages": []}), "messages"),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
                "temperature",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].tool_call_id",
            ),
            (serde_json::json!({"model": "m", "messages": [{"role": "assistant"}]}), "messages[0].content"),
            (serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}), "n"),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "bad name"}}]}),
                "tools[0].function.name",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "a"}}],
                "tool_choice": {"type": "function", "function": {"name": "b"}}}),
                "tool_choice",
            ),
        ];
        for (body, field) in cases {
            let err = chat(&req(body)).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(field), "{}", err.message);
            assert!(err.message.starts_with(field));
        }
        assert!(
            chat(&req(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})))
                .is_ok()
        );
    }
}
