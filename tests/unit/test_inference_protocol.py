"""Pure inference mapping: OpenAI JSON <-> events <-> engine requests, offsets, metrics."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from inference.metrics import DURATION_BUCKETS_MS, LlmMetrics
from inference.offsets import OffsetBook, PartitionOffsets, decode_done, encode_done
from inference.protocol import (
    GenerationResult,
    InvalidRequest,
    generation_request,
    openai_error,
    openai_from_response,
    request_from_openai,
    response_event,
    turn_event,
)
from schemas.catalog import default_catalog
from schemas.validation import validate_event

NOW = 1_800_000_000_000


def openai_body(**extra):
    return {"messages": [{"role": "user", "content": "Hola, busco un Corolla"}], **extra}


def make_request(**extra):
    return request_from_openai(
        openai_body(**extra),
        request_id="r1",
        reply_topic="replies",
        timeout_s=30,
        now=NOW,
        session_id="s1",
    )


def test_openai_body_becomes_a_valid_inference_request():
    event = make_request(max_tokens=32, temperature=0, stop="\n", seed=7, metadata={"intent": "x"})
    validate_event(default_catalog().current("InferenceRequest"), event)
    assert event["sampling"]["max_tokens"] == 32
    assert event["sampling"]["stop"] == ["\n"]
    assert event["sampling"]["seed"] == 7
    assert event["deadline"] == NOW + 30_000
    assert event["metadata"] == {"intent": "x"}
    gen = generation_request(event)
    assert gen.sampling.temperature == 0.0
    assert gen.deadline_ms == NOW + 30_000
    assert gen.messages == ({"role": "user", "content": "Hola, busco un Corolla"},)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"temperature": 3}, "body.temperature: got 3.0, expected a value from 0 to 2"),
        ({"max_tokens": 0}, "body.max_tokens: got 0"),
        ({"top_p": 0}, "body.top_p"),
        ({"stream": "yes"}, "stream: expected true or false"),
        (
            {"stream_options": {"include_usage": True}},
            "stream_options: only allowed with stream=true",
        ),
        ({"n": 3}, "n: only n=1"),
        ({"messages": []}, "messages: got [], expected a non-empty list"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role: got 'robot'"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content: got 5"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "nothing to answer"),
        ({"stop": ["a", ""]}, "body.stop"),
    ],
)
def test_bad_openai_bodies_are_refused_naming_the_field(extra, needle):
    with pytest.raises(InvalidRequest) as err:
        make_request(**extra)
    assert needle in str(err.value)


def test_generation_request_refuses_bad_sampling_from_a_raw_event():
    event = make_request()
    event["sampling"]["top_p"] = 1.5
    with pytest.raises(InvalidRequest, match=r"sampling.top_p: got 1.5"):
        generation_request(event)


def result(**kw):
    base = dict(
        text="Claro, tenemos varios Corolla.",
        finish_reason="stop",
        prompt_tokens=40,
        completion_tokens=9,
        started_ms=NOW + 15,
        first_token_ms=NOW + 65,
        finished_ms=NOW + 415,
    )
    base.update(kw)
    return GenerationResult(**base)


def test_response_event_splits_latency_and_validates():
    request = make_request()
    resp = response_event(request, model_version="m1", worker_id="w", result=result())
    validate_event(default_catalog().current("InferenceResponse"), resp)
    assert resp["queue_wait_ms"] == 15
    assert resp["time_to_first_token_ms"] == 50
    assert resp["total_ms"] == 415
    assert resp["error"] is None
    openai = openai_from_response(resp)
    assert openai["choices"][0]["message"]["content"] == "Claro, tenemos varios Corolla."
    assert openai["usage"] == {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}
    assert openai["id"] == "chatcmpl-r1"


def test_error_response_and_its_http_status():
    request = make_request()
    resp = response_event(
        request, model_version="m1", worker_id="w", error=("timeout", "late"), now=NOW + 31_000
    )
    assert resp["finish_reason"] == "timeout"
    assert resp["error"] == {"type": "timeout", "message": "late"}
    assert resp["total_ms"] == 31_000
    assert openai_error("timeout", "late")[0] == 504
    assert openai_error("invalid_request", "x")[0] == 400
    with pytest.raises(ValueError, match="unknown inference error type"):
        response_event(request, model_version="m", worker_id="w", error=("boom", "x"))


def test_turn_event_carries_the_measurement_and_the_services_labels():
    request = make_request(
        metadata={
            "intent": "buscar_vehiculo",
            "confidence": "0.91",
            "turn_index": "3",
            "lead_captured": "true",
        }
    )
    resp = response_event(request, model_version="m1", worker_id="w", result=result())
    turn = turn_event(request, resp)
    validate_event(default_catalog().current("ChatTurn"), turn)
    assert turn["latency_ms"] == 415
    assert turn["queue_wait_ms"] == 15
    assert turn["time_to_first_token_ms"] == 50
    assert (turn["prompt_tokens"], turn["completion_tokens"]) == (40, 9)
    assert turn["intent"] == "buscar_vehiculo"
    assert turn["confidence"] == 0.91
    assert turn["turn_index"] == 3
    assert turn["lead_captured"] is True
    assert turn["is_fallback"] is False
    assert turn["user_query"] == "Hola, busco un Corolla"
    bad = make_request(metadata={"confidence": "7"})
    err = response_event(bad, model_version="m1", worker_id="w", error=("engine_error", "x"))
    t2 = turn_event(bad, err)
    assert t2["confidence"] is None and t2["is_fallback"] is True
    assert t2["metadata"]["error"] == "engine_error"


def test_done_offsets_round_trip_through_commit_metadata():
    text = encode_done(100, {100, 101, 102, 105, 107, 108, 99})
    assert text == "done:0-2,5,7-8"
    assert decode_done(100, text) == {100, 101, 102, 105, 107, 108}
    assert decode_done(100, "garbage") == set()
    assert decode_done(100, "done:x") == set()
    assert decode_done(100, None) == set()


def test_watermark_waits_for_the_lowest_unanswered_offset():
    part = PartitionOffsets()
    for o in (10, 11, 12, 13):
        assert part.begin(o)
    part.finish(12)
    part.finish(13)
    assert part.watermark() == 10
    assert part.metadata(10) == "done:2-3"
    part.finish(10)
    assert part.watermark() == 11
    part.finish(11)
    assert part.watermark() == 14
    assert part.metadata(14) == "done:"


def test_restarted_owner_skips_offsets_answered_before_the_crash():
    book = OffsetBook()
    book.assign("t", 0, 10, "done:2-3")  # 12 and 13 were answered, 10 and 11 were not
    fresh = [o for o in range(10, 15) if book.begin("t", 0, o)]
    assert fresh == [10, 11, 14]
    for o in fresh:
        book.finish("t", 0, o)
    assert book.to_commit() == [("t", 0, 15, "done:")]
    book.committed("t", 0, 15, "done:")
    assert book.to_commit() == []


def test_llm_metrics_have_the_seeds_names_and_buckets():
    m = LlmMetrics()
    m.set_model({"model_version": "m1", "engine": "llamacpp"})
    m.observe(
        total_ms=420,
        error_type=None,
        prompt_tokens=40,
        completion_tokens=9,
        queue_wait_ms=15,
        ttft_ms=50,
    )
    m.observe(total_ms=30_500, error_type="timeout")
    text = generate_latest(m.registry).decode()
    for name in (
        "okla_llm_requests_total 2.0",
        "okla_llm_requests_success_total 1.0",
        'okla_llm_requests_error_total{error_type="timeout"} 1.0',
        "okla_llm_response_duration_ms_count 2.0",
        "okla_llm_tokens_total 49.0",
        "okla_llm_prompt_tokens_total 40.0",
        "okla_llm_completion_tokens_total 9.0",
        "okla_llm_model_loaded 1.0",
        "okla_llm_active_requests 0.0",
        "okla_llm_avg_response_time_ms 15460.0",
        'okla_llm_model_info{engine="llamacpp",model_version="m1"} 1.0',
        "okla_llm_uptime_seconds",
    ):
        assert name in text, name
    assert len(DURATION_BUCKETS_MS) == 11
    assert text.count("okla_llm_response_duration_ms_bucket") == 12  # 11 + Inf
    other = LlmMetrics(prefix="chatbot")
    assert "chatbot_requests_total" in generate_latest(other.registry).decode()


def test_response_format_constrains_the_answer_to_a_json_schema() -> None:
    import json as _json

    from inference.protocol import generation_request, request_from_openai

    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    base = {"messages": [{"role": "user", "content": "hola"}]}

    def event(fmt):
        return request_from_openai(
            {**base, "response_format": fmt}, request_id="r", reply_topic="t", timeout_s=5, now=0
        )

    ev = event({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert _json.loads(ev["response_format"]) == schema
    assert generation_request(ev).json_schema == schema
    assert _json.loads(event({"type": "json_object"})["response_format"]) == {"type": "object"}
    assert event({"type": "text"})["response_format"] is None
    assert generation_request(event(None)).json_schema is None
    with pytest.raises(InvalidRequest, match="response_format: type 'xml' is not one of"):
        event({"type": "xml"})
    with pytest.raises(InvalidRequest, match="json_schema needs"):
        event({"type": "json_schema", "json_schema": {"name": "x"}})
    with pytest.raises(InvalidRequest, match="response_format: not JSON"):
        generation_request({**ev, "response_format": "{nope"})
