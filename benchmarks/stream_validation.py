"""Cost per event of validating a stream, stage by stage (run: .venv/bin/python benchmarks/stream_validation.py).

Builds a realistic Anthropic stream and an OpenAI stream of about 1000 events in memory, then times, side by
side and best of several repeats:

  decode                  SSEDecoder only
  + json                  and json.loads of each data field
  + grammar               and the streaming grammar
  full reader             StreamReader: all of the above + schema validation + timing (keep_events=False, as
                          the load tests run it); "full, keep events" keeps events and payloads as the suite does

Chunks are one event each (a server that flushes every event, the common case), and also 16 KiB reads.
The target is under 10 us per event for the full reader.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from conformance.grammar import AnthropicGrammar, OpenAIGrammar
from conformance.sse import SSEDecoder
from conformance.stream import StreamReader, parse_json

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "naïve",
    "cafés",
    "serve",
    "crème",
    "brûlée",
    "—",
    "ünïcödé",
    "✓",
]


def frame(name: str | None, payload: object) -> bytes:
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return ((f"event: {name}\n" if name else "") + f"data: {data}\n\n").encode()


def anthropic_frames(events: int = 1000) -> list[bytes]:
    """message_start, a long text block with pings, a tool_use block, message_delta, message_stop."""
    out = [
        frame(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "claude-sonnet-4-5",
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 2095,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 1,
                        "service_tier": "standard",
                    },
                },
            },
        ),
        frame(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
    ]
    text_deltas = events - 12
    for i in range(text_deltas):
        if i % 100 == 50:
            out.append(frame("ping", {"type": "ping"}))
        words = " " + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 3))
        out.append(
            frame(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": words}},
            )
        )
    out.append(frame("content_block_stop", {"type": "content_block_stop", "index": 0}))
    tool = {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}
    out.append(frame("content_block_start", {"type": "content_block_start", "index": 1, "content_block": tool}))
    for part in ("", '{"location":', ' "San Francisco, CA"', ', "unit": "celsius"}'):
        out.append(
            frame(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": part},
                },
            )
        )
    out.append(frame("content_block_stop", {"type": "content_block_stop", "index": 1}))
    out.append(
        frame(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": text_deltas * 2},
            },
        )
    )
    out.append(frame("message_stop", {"type": "message_stop"}))
    return out


def openai_frames(events: int = 1000) -> list[bytes]:
    """Role chunk, content chunks, finish chunk, include_usage chunk, [DONE]."""

    def chunk(choices: list[object], usage: object = None) -> bytes:
        body = {
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion.chunk",
            "created": 1741569952,
            "model": "gpt-4o-2024-08-06",
            "service_tier": "default",
            "system_fingerprint": "fp_eb9dce56a8",
            "choices": choices,
            "usage": usage,
        }
        return frame(None, body)

    out = [chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None}, "logprobs": None,
                   "finish_reason": None}])]  # fmt: skip
    for i in range(events - 4):
        words = " " + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 3))
        out.append(chunk([{"index": 0, "delta": {"content": words}, "logprobs": None, "finish_reason": None}]))
    out.append(chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
    usage = {"prompt_tokens": 19, "completion_tokens": events * 2, "total_tokens": 19 + events * 2,
             "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
             "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                           "rejected_prediction_tokens": 0}}  # fmt: skip
    out.append(chunk([], usage))
    out.append(b"data: [DONE]\n\n")
    return out


def rechunk(frames: list[bytes], size: int) -> list[bytes]:
    body = b"".join(frames)
    return [body[i : i + size] for i in range(0, len(body), size)]


def decode_only(chunks: list[bytes], flavour: str) -> int:
    decoder = SSEDecoder(expect_event_field=flavour == "anthropic")
    n = 0
    for i, chunk in enumerate(chunks):
        n += len(decoder.feed(chunk, float(i)))
    return n + len(decoder.close(1e9))


def decode_json(chunks: list[bytes], flavour: str) -> int:
    decoder = SSEDecoder(expect_event_field=flavour == "anthropic")
    n = 0
    for i, chunk in enumerate(chunks):
        for event in decoder.feed(chunk, float(i)):
            n += 1
            if event.data is not None:
                parse_json(event.data)
    return n + len(decoder.close(1e9))


def decode_json_grammar(chunks: list[bytes], flavour: str) -> int:
    decoder = SSEDecoder(expect_event_field=flavour == "anthropic")
    grammar: AnthropicGrammar | OpenAIGrammar = AnthropicGrammar() if flavour == "anthropic" else OpenAIGrammar()
    n = 0
    for i, chunk in enumerate(chunks):
        for event in decoder.feed(chunk, float(i)):
            n += 1
            grammar.feed(event, None if event.data is None else parse_json(event.data))
    grammar.finish()
    assert not grammar.violations, grammar.violations[:3]
    return n


def full_reader(chunks: list[bytes], flavour: str, *, keep: bool = False) -> int:
    reader = StreamReader(flavour, t_start=0.0, keep_events=keep, expect_usage=flavour == "openai")  # type: ignore[arg-type]
    for i, chunk in enumerate(chunks):
        reader.feed(chunk, float(i))
    result = reader.close(1e9)
    assert not result.violations and result.complete, result.violations[:3]
    return result.event_count


def full_reader_keep(chunks: list[bytes], flavour: str) -> int:
    return full_reader(chunks, flavour, keep=True)


STAGES: list[tuple[str, Callable[[list[bytes], str], int]]] = [
    ("decode", decode_only),
    ("+ json", decode_json),
    ("+ grammar", decode_json_grammar),
    ("full reader", full_reader),
    ("full, keep events", full_reader_keep),
]


def calibration(repeats: int) -> float:
    """json.loads of one typical text delta, in microseconds: a yardstick for this machine's speed."""
    data = '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the quick brown"}}'
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(2000):
            json.loads(data)
        best = min(best, (time.perf_counter() - start) / 2000)
    return best * 1e6


def main() -> None:
    """Print the table: every cell is the best of the repeats, stages interleaved so load hits them alike."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    streams = {"anthropic": anthropic_frames(args.events), "openai": openai_frames(args.events)}
    layouts: dict[str, Callable[[list[bytes]], list[bytes]]] = {
        "1 event/chunk": lambda f: f,
        "16 KiB chunks": lambda f: rechunk(f, 16384),
    }
    cases = [(flavour, layout, layouts[layout](frames)) for flavour, frames in streams.items() for layout in layouts]
    for flavour, frames in streams.items():
        full_reader(frames, flavour)  # warm up: compiled schema validator, imports
        print(f"{flavour}: {len(frames)} events, {sum(map(len, frames)) / len(frames):.0f} bytes/event on average")
    best = {(stage, flavour, layout): float("inf") for stage, _ in STAGES for flavour, layout, _ in cases}
    for _ in range(args.repeats):
        for flavour, layout, chunks in cases:
            for stage, func in STAGES:
                start = time.perf_counter()
                events = func(chunks, flavour)
                elapsed = (time.perf_counter() - start) / events * 1e6
                key = (stage, flavour, layout)
                best[key] = min(best[key], elapsed)
    print(f"machine yardstick: json.loads of a 96-byte text delta = {calibration(args.repeats):.2f} us")
    print(f"{'us/event':<20}" + "".join(f"{flavour + ', ' + layout:>30}" for flavour, layout, _ in cases))
    for stage, _ in STAGES:
        print(f"{stage:<20}" + "".join(f"{best[(stage, flavour, layout)]:>30.2f}" for flavour, layout, _ in cases))


if __name__ == "__main__":
    main()
