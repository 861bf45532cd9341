"""conformance.cassette: the format (round trip, schema, versions), canonical digests, redaction, the Recorder."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from conformance import schemas
from conformance.cassette import (
    FORMAT,
    KEY_STAND_IN,
    Cassette,
    CassetteError,
    Interaction,
    RecordedError,
    RecordedRequest,
    RecordedResponse,
    RecordedTarget,
    Recorder,
    Redactor,
    _replace_in_chunks,
    body_digest,
    decode_chunks,
    interaction_from_exchange,
    read_cassette,
    relative_path,
    render_cassette,
    write_cassette,
)
from conformance.errors import HarnessError
from conformance.exchange import WRONG_KEY, Exchange, RequestSpec, Timings, TransportError
from conformance.gateway import RunningGateway
from conformance.probes import PROBES_BY_ID
from conformance.runner import ConformanceRun
from conformance.target import KEY_PLACEHOLDER, Secret, Target

KEY = "sk-test-0123456789abcdefghijklmnop"
SSE = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def sample_cassette() -> Cassette:
    """Every spelling the format has: JSON, lines, text, base64 and omitted bodies; errors with and without a body."""
    big = b'{"x":"' + b"y" * 70_000 + b'"}'
    interactions = (
        Interaction(
            RecordedRequest("POST", "/v1/messages", (("x-api-key", KEY_PLACEHOLDER),), b'{"b":1,"a":[1,2]}'),
            RecordedResponse(200, (("content-type", "application/json"),), b'{"id":"msg_1","n":1.5}', ((0.01, 22),)),
            duration=0.02,
            label="plain",
            test="test_probes.py::test_probe[messages_basic]",
        ),
        Interaction(
            RecordedRequest("POST", "/v1/messages", (), b'{"stream":true}'),
            RecordedResponse(
                200, (("content-type", "text/event-stream"),), SSE + SSE, ((0.1, 10), (0.25, len(SSE) * 2 - 10))
            ),
            RecordedError("truncated-chunked", "incomplete chunked read"),
            duration=0.3,
            via="sdk",
        ),
        Interaction(
            RecordedRequest("GET", "/v1/models?limit=1"),
            RecordedResponse(200, (("x-raw", "caf\u00e9"),), bytes(range(256)), ((0.0, 256),)),
        ),
        Interaction(
            RecordedRequest("POST", "/v1/messages", (), None, body_digest(big), len(big)),
            None,
            RecordedError("timeout-first-byte", "late"),
        ),
        Interaction(RecordedRequest("GET", "/v1/x"), RecordedResponse(204, (), b"one line, no break", ((0.0, 18),))),
    )
    target = RecordedTarget("http://127.0.0.1:8787", "bearer", True, "m", "2023-06-01")
    return Cassette(target, interactions, "2026-11-23T00:00:00+00:00", options={"max_examples": 3}, note="sample")


def test_a_cassette_round_trips_through_its_json_and_matches_its_schema(tmp_path: Path) -> None:
    cassette = sample_cassette()
    path = write_cassette(cassette, tmp_path)
    assert path == tmp_path / "cassette.json"
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT == "gateway-conformance/cassette@1"
    assert schemas.validator("cassette/cassette").errors(doc) == ()
    back = read_cassette(tmp_path)
    assert back.interactions == cassette.interactions
    assert back.target == cassette.target and back.options == {"max_examples": 3}
    spellings = [next(iter(i["response"]["body"])) for i in doc["interactions"] if i["response"]]
    assert spellings == ["json", "lines", "base64", "text"]
    assert doc["interactions"][3]["request"]["body"] == {"omitted": True}  # 70 kB: only size and digest
    assert doc["interactions"][3]["request"]["size"] == 70_008
    # Written again, byte for byte: a re-recorded gateway diffs only where it changed.
    assert render_cassette(back) == path.read_text()


def test_response_json_is_kept_as_json_only_when_that_gives_back_the_same_bytes(tmp_path: Path) -> None:
    spaced = b'{"id": "msg_1"}'
    item = Interaction(RecordedRequest("GET", "/a"), RecordedResponse(200, (), spaced, ((0.0, len(spaced)),)))
    cassette = Cassette(RecordedTarget("http://127.0.0.1:1"), (item,))
    doc = json.loads(render_cassette(cassette))
    assert doc["interactions"][0]["response"]["body"] == {"text": '{"id": "msg_1"}'}
    assert read_cassette(write_cassette(cassette, tmp_path / "c.json")).interactions[0].response.body == spaced


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d.update(format="gateway-conformance/cassette@2"), "not supported by this version"),
        (lambda d: d.update(format="gateway-conformance/report@1"), "not a cassette"),
        (lambda d: d.pop("target"), "does not match its schema"),
        (lambda d: d["interactions"][0].update(response=None, error=None), "schema: interactions.0"),
        (lambda d: d["interactions"][0]["response"].update(chunks=[[0.0, 3]]), "the chunks cover 3 bytes"),
        (lambda d: d["interactions"][3]["request"].pop("digest"), "needs its digest"),
    ],
    ids=["newer-version", "other-format", "no-target", "no-outcome", "chunks-short", "omitted-without-digest"],
)
def test_the_reader_refuses_what_it_cannot_replay_and_says_why(tmp_path: Path, edit: object, fragment: str) -> None:
    doc = sample_cassette().to_json()
    edit(doc)  # type: ignore[operator]
    (tmp_path / "cassette.json").write_text(json.dumps(doc))
    with pytest.raises(CassetteError, match=fragment):
        read_cassette(tmp_path)


def test_a_missing_cassette_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(CassetteError, match="python -m conformance record"):
        read_cassette(tmp_path / "nothing")


def test_body_digests_ignore_json_formatting_but_not_content() -> None:
    assert body_digest(b'{"a": 1, "b": [1, 2]}') == body_digest(b'{"b":[1,2],"a":1}')
    assert body_digest(b'{"a":1}') != body_digest(b'{"a":2}')
    assert body_digest(b"not json") != body_digest(b"not json ")
    assert body_digest(None) == body_digest(b"")
    assert body_digest(b'{"x":"' + b"y" * 70_000 + b'"}') != body_digest(b'{ "x":"' + b"y" * 70_000 + b'"}')


def test_paths_are_kept_relative_to_the_base_url_with_their_query() -> None:
    assert relative_path("http://h:1/prefix/v1/models?limit=1", "http://h:1/prefix") == "/v1/models?limit=1"
    assert relative_path("http://h:1/v1/messages", "http://h:1") == "/v1/messages"
    assert relative_path("http://other:1/v1/messages", "http://h:1") == "http://other:1/v1/messages"


def test_replacing_a_secret_moves_chunk_boundaries_out_of_it() -> None:
    body = b"aaSECRETbb"
    chunks = ((0.1, 4), (0.2, 6))  # the first chunk ends inside the secret
    new, moved = _replace_in_chunks(body, chunks, [(b"SECRET", b"***")])
    assert new == b"aa***bb"
    assert moved == ((0.1, 5), (0.2, 2))
    assert _replace_in_chunks(b"none here", ((0.0, 9),), [(b"SECRET", b"*")]) == (b"none here", ((0.0, 9),))


def test_decoding_recorded_sdk_chunks_follows_the_content_encoding() -> None:
    import gzip
    import zlib

    data = b"hello " * 50
    packed = gzip.compress(data)
    pieces = [(0.1, packed[:20]), (0.2, packed[20:])]
    assert b"".join(d for _, d in decode_chunks(pieces, "gzip")) == data
    deflated = zlib.compress(data)
    assert b"".join(d for _, d in decode_chunks([(0.0, deflated)], "deflate")) == data
    assert decode_chunks([(0.0, b"raw")], "zstd-not-supported") == [(0.0, b"raw")]


def _exchange_that_leaks(target: Target) -> Exchange:
    """Everything a careless gateway can do with a key: echo it in a body split across chunks, in a header, in a
    cookie, in a binary body; put other credentials in JSON fields; and an error message that quotes it."""
    echo = json.dumps({"type": "error", "error": {"type": "authentication_error", "message": f"bad key {KEY}"}})
    body = echo.encode() + b"\n" + json.dumps({"access_token": "tok-other-secret-123", "note": WRONG_KEY}).encode()
    split = body.index(KEY.encode()) + 5
    spec = RequestSpec("POST", "/v1/messages", json={"model": "m", "api_key": KEY}, label=f"label {KEY}")
    return Exchange(
        request=spec,
        url=target.url(spec.path),
        request_headers=(("x-api-key", KEY_PLACEHOLDER), ("cookie", "session=abc123")),
        status=401,
        headers=(("set-cookie", "sid=s3cr3t; HttpOnly"), ("x-echo-key", KEY), ("authorization", f"Bearer {KEY}")),
        body=body,
        chunks=((0.01, split), (0.02, len(body) - split)),
        error=TransportError("reset", f"connection reset while sending {KEY}"),
        timings=Timings(ttfb=0.01, total=0.03),
    )


def test_the_key_appears_nowhere_in_a_written_cassette(tmp_path: Path) -> None:
    target = Target(f"http://127.0.0.1:9/{KEY}", Secret(KEY))
    recorder = Recorder(target, note=f"recorded with {KEY}")
    recorder.put(recorder.reserve(), interaction_from_exchange(_exchange_that_leaks(target), target, test=KEY))
    binary = b"\xff\xfe" + KEY.encode() + b"\x00"
    sdk_request = RecordedRequest("POST", "/v1/messages", (("authorization", f"Bearer {KEY}"),), b'{"model":"m"}')
    recorder.put(
        recorder.reserve(),
        Interaction(sdk_request, RecordedResponse(200, (), binary, ((0.0, len(binary)),)), via="sdk"),
    )
    path = recorder.write(tmp_path)
    text = path.read_text()
    assert KEY not in text
    doc = json.loads(text)
    for item in doc["interactions"]:
        body = item["response"]["body"]
        if "base64" in body:
            assert KEY.encode() not in base64.b64decode(body["base64"])
    for secret in ("tok-other-secret-123", "abc123", "s3cr3t"):
        assert secret not in text
    leak, sdk = read_cassette(path).interactions
    # Where the gateway echoed the key, the stand-in is (a replay sends it as its key: the echo is still caught).
    assert leak.response is not None and KEY_STAND_IN.encode() in leak.response.body
    assert ("x-echo-key", KEY_STAND_IN) in leak.response.headers
    assert ("authorization", f"Bearer {KEY_STAND_IN}") in leak.response.headers
    assert ("set-cookie", "***") in leak.response.headers and ("cookie", "***") in leak.request.headers
    assert sum(n for _, n in leak.response.chunks) == len(leak.response.body)
    assert WRONG_KEY.encode() in leak.response.body  # not a secret: the probes send it on purpose
    assert ("authorization", f"Bearer {KEY_PLACEHOLDER}") in sdk.request.headers
    # The request digest is the one a replay (whose key is the stand-in) computes for the same request.
    replayed = json.dumps({"model": "m", "api_key": KEY_STAND_IN}, separators=(",", ":")).encode()
    assert leak.request.digest == body_digest(replayed)
    assert leak.error is not None and KEY not in leak.error.message
    assert read_cassette(path).target.base_url == f"http://127.0.0.1:9/{KEY_STAND_IN}"


def test_the_recorder_refuses_to_write_a_file_that_would_hold_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = Target(f"http://127.0.0.1:9/{KEY}", Secret(KEY))
    recorder = Recorder(target)
    assert KEY not in recorder.write(tmp_path / "ok").read_text()
    # Were a redaction path ever to miss the key, the last check before writing still refuses the file.
    monkeypatch.setattr(Redactor, "text", lambda self, text: text)
    with pytest.raises(HarnessError, match="still contains the key"):
        recorder.write(tmp_path / "leak")
    assert not (tmp_path / "leak" / "cassette.json").exists()


def test_recording_a_run_keeps_transport_and_sdk_requests_in_the_order_they_were_sent(
    reference_gateway: RunningGateway, tmp_path: Path
) -> None:
    target = Target(reference_gateway.url, Secret(reference_gateway.api_key))
    recorder = Recorder(target)
    run = ConformanceRun(target, transport=recorder.transport())
    with recorder.sdk_requests():
        for pid in ("messages_stream", "sdk_anthropic"):
            recorder.context = pid
            run.run_probe(PROBES_BY_ID[pid])
    cassette = read_cassette(recorder.write(tmp_path))
    assert [(i.via, i.test) for i in cassette.interactions] == [
        ("transport", "messages_stream"),
        ("transport", "messages_stream"),
        *[("sdk", "sdk_anthropic")] * 4,
    ]
    stream = cassette.interactions[0]
    assert stream.response is not None and stream.response.body.startswith(b"event: message_start")
    assert stream.response.chunks and sum(n for _, n in stream.response.chunks) == len(stream.response.body)
    assert 0 < stream.response.chunks[0][0] <= stream.duration
    assert reference_gateway.api_key not in (tmp_path / "cassette.json").read_text()
    assert all(i.response is not None and i.response.status == 200 for i in cassette.interactions)
    assert cassette.sdk_versions.get("anthropic")
