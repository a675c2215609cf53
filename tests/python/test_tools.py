"""Tool calling, non-streaming and streaming, through the kinds backed by the mock upstream.

The mock calls every offered tool with {"city": "Paris"} when the last message is the user's,
and answers text once the tool results are sent back.
"""

from __future__ import annotations

import json

import pytest

from support import MOCK_CHAT_KINDS

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Local time in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
]
QUESTION = "What is the weather and the time in Paris?"


@pytest.mark.parametrize("kind", MOCK_CHAT_KINDS, ids=str)
def test_two_tools_give_two_parallel_calls_then_text_after_the_results(client, kind):
    messages = [{"role": "user", "content": QUESTION}]
    first = client.chat.completions.create(model=kind.alias, messages=messages, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 2
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    for call in calls:
        assert call.type == "function"
        assert call.id
        assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert len({c.id for c in calls}) == 2, "tool call ids are distinct"

    # Send the results back: the model answers with text.
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in calls
            ],
        }
    )
    for call in calls:
        result = {"get_weather": "sunny, 21C", "get_time": "14:05"}[call.function.name]
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    second = client.chat.completions.create(model=kind.alias, messages=messages, tools=TOOLS)
    answer = second.choices[0]
    assert answer.finish_reason == "stop"
    assert not answer.message.tool_calls
    assert answer.message.content == f"mock: {QUESTION}"


@pytest.mark.parametrize("kind", MOCK_CHAT_KINDS, ids=str)
def test_tool_choice_forces_one_tool(client, kind):
    completion = client.chat.completions.create(
        model=kind.alias,
        messages=[{"role": "user", "content": QUESTION}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert [c.function.name for c in calls] == ["get_time"]


@pytest.mark.parametrize("kind", MOCK_CHAT_KINDS, ids=str)
def test_streamed_tool_calls_reassemble_from_fragments(client, kind):
    stream = client.chat.completions.create(
        model=kind.alias,
        messages=[{"role": "user", "content": QUESTION}],
        tools=TOOLS,
        stream=True,
    )
    calls: dict[int, dict] = {}
    finishes = []
    fragments = 0
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for tc in delta.tool_calls or []:
            fragments += 1
            call = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            if tc.id:
                assert call["id"] in (None, tc.id), "a call's id does not change"
                call["id"] = tc.id
            if tc.function and tc.function.name:
                call["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                call["arguments"] += tc.function.arguments
        if chunk.choices[0].finish_reason:
            finishes.append(chunk.choices[0].finish_reason)

    assert finishes == ["tool_calls"]
    assert sorted(calls) == [0, 1]
    assert [calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_time"]
    for call in calls.values():
        assert call["id"]
        assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert fragments >= 2, "tool calls arrive as deltas"
