#!/usr/bin/env python3
"""What the official SDKs make of each LiteLLM finding: one SDK call per finding, its result recorded as seen.

    GATEWAY_API_KEY=... python tools/litellm/sdk_check.py --base-url http://127.0.0.1:4400 \
        --models ref-openai,ref-anthropic --limited-models ref-openai-limited,ref-anthropic-limited --out sdk.json

Every call uses `anthropic.Anthropic(base_url=..., api_key=..., max_retries=0)` (or the `openai` SDK for the
chat surface) unless the case is about retries. Nothing is judged here: each case records what the SDK returned or
raised (class, status, `.type`, `.request_id`, the fields a caller would read), and docs/litellm-findings.md says
whether that means the SDK noticed. Run by tools/litellm/run.py; usable on its own against any running proxy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import anthropic
import openai

ECHO = "Repeat exactly: The quick brown fox jumps over the lazy dog."
WRONG_KEY = "sk-conformance-wrong-key-000000000000"
# Upstream cues (conformance/gateway/cues.py): the reference gateway behind the proxy fails on purpose.
CUE_529 = "[[upstream:status=529]]"
CUE_429 = "[[upstream:status=429,retry-after=7]]"


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def _error(exc: BaseException) -> dict[str, Any]:
    seen: dict[str, Any] = {"raised": type(exc).__name__}
    for name in ("status_code", "type", "request_id"):
        value = getattr(exc, name, None)
        if value is not None or name in ("type", "request_id"):
            seen[name] = value
    body = getattr(exc, "body", None)
    if body is not None:  # the body as the SDK parsed it; long LiteLLM messages cut to their start
        text = json.dumps(body, default=str) if isinstance(body, (dict, list)) else str(body)
        seen["body"] = text if len(text) <= 240 else text[:240] + "..."
    response = getattr(exc, "response", None)
    if response is not None:
        seen["retry-after"] = response.headers.get("retry-after")
    return seen


def client(
    base_url: str, key: str, *, max_retries: int = 0, attempts: list[float] | None = None
) -> anthropic.Anthropic:
    """The official client, optionally counting every HTTP attempt it makes (retries included)."""
    extra: dict[str, Any] = {}
    if attempts is not None:
        extra["http_client"] = anthropic.DefaultHttpxClient(
            event_hooks={"request": [lambda request: attempts.append(time.perf_counter())]}
        )
    return anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=max_retries, timeout=60, **extra)


def cases(base_url: str, key: str, model: str) -> dict[str, Callable[[], dict[str, Any]]]:
    """name -> a call that returns what the SDK gave back (exceptions are caught by the caller)."""
    sdk = client(base_url, key)

    def create(**kwargs: Any) -> Any:
        return sdk.messages.create(model=model, max_tokens=kwargs.pop("max_tokens", 64), **kwargs)

    def served(message: Any) -> dict[str, Any]:
        text = "".join(getattr(b, "text", "") for b in message.content)
        return {"served": True, "id": message.id, "stop_reason": message.stop_reason, "text": text[:120]}

    def basic() -> dict[str, Any]:
        message = create(messages=_user(ECHO))
        return {**served(message), "_request_id": message._request_id, "usage": message.usage.model_dump()}

    def stream_usage() -> dict[str, Any]:
        events = list(create(messages=_user(ECHO), stream=True))
        start = events[0]
        first = start.message.usage.input_tokens if start.type == "message_start" else None
        with sdk.messages.stream(model=model, max_tokens=64, messages=_user(ECHO)) as stream:
            final = stream.get_final_message()
        return {
            "events": [e.type for e in events],
            "message_start.usage.input_tokens": first,
            "get_final_message().usage.input_tokens": final.usage.input_tokens,
        }

    def stop_sequence() -> dict[str, Any]:
        message = create(messages=_user("Repeat exactly: alpha beta gamma HALT delta epsilon"), stop_sequences=["HALT"])
        return {**served(message), "stop_sequence": message.stop_sequence}

    def retries_on_500() -> dict[str, Any]:
        attempts: list[float] = []
        retrying = client(base_url, key, max_retries=2, attempts=attempts)
        started = time.perf_counter()
        try:
            retrying.messages.create(
                model=model, max_tokens=64, messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]
            )
        except anthropic.APIStatusError as exc:
            return {
                **_error(exc),
                "attempts (max_retries=2)": len(attempts),
                "seconds": round(time.perf_counter() - started, 2),
            }
        return {"served": True, "attempts (max_retries=2)": len(attempts)}

    def upstream_429_retry_after_7() -> dict[str, Any]:
        # The reference gateway upstream answers 429 with retry-after: 7 (an upstream cue, docs/upstream-mode.md).
        attempts: list[float] = []
        retrying = client(base_url, key, max_retries=2, attempts=attempts)
        started = time.perf_counter()
        seen: dict[str, Any]
        try:
            retrying.messages.create(model=model, max_tokens=8, messages=_user(f"{CUE_429} Repeat exactly: hi"))
            seen = {"served": True}
        except anthropic.APIStatusError as exc:
            seen = _error(exc)
        gaps = [round(b - a, 2) for a, b in itertools.pairwise(attempts)]
        return {**seen, "attempts (max_retries=2)": len(attempts), "gaps between attempts (s)": gaps,
                "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip

    def models_list() -> dict[str, Any]:
        page = sdk.models.list(limit=1)
        return {"len(page.data)": len(page.data), "has_more": page.has_more, "ids": [m.id for m in page.data]}

    def models_retrieve() -> dict[str, Any]:
        info = sdk.models.retrieve(model)
        return {"id": info.id, "type": info.type, "display_name": info.display_name, "created_at": str(info.created_at)}

    def count_tokens() -> dict[str, Any]:
        request = {"system": "You are terse.", "messages": _user(ECHO)}
        counted = sdk.messages.count_tokens(model=model, **request)  # type: ignore[arg-type]
        usage = create(**request).usage
        return {"count_tokens.input_tokens": counted.input_tokens, "create().usage.input_tokens": usage.input_tokens}

    def wrong_key() -> dict[str, Any]:
        client(base_url, WRONG_KEY).messages.create(model=model, max_tokens=8, messages=_user(ECHO))
        return {"served": True}

    def unknown_path() -> dict[str, Any]:
        sdk.get("/v1/no-such-endpoint", cast_to=object)
        return {"served": True}

    return {
        "basic (request-id header, message id)": basic,
        "stream usage (message_start vs final)": stream_usage,
        "stop_sequences": stop_sequence,
        "temperature 1.5": lambda: served(create(messages=_user(ECHO), extra_body={"temperature": 1.5})),
        "top_k 5 (valid)": lambda: served(create(messages=_user(ECHO), extra_body={"top_k": 5})),
        "unknown top-level field": lambda: served(create(messages=_user(ECHO), extra_body={"not_a_field": True})),
        "service_tier invalid": lambda: served(
            create(messages=_user(ECHO), extra_body={"service_tier": "not-a-valid-value"})
        ),
        "empty text block": lambda: served(
            create(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}])
        ),
        "empty text block, max_retries=2": retries_on_500,
        "messages not an array": lambda: served(create(messages="hello")),
        "wrong key": wrong_key,
        "upstream 529 (cue)": lambda: served(create(messages=_user(f"{CUE_529} Repeat exactly: hi"))),
        "upstream 429 retry-after 7 (cue), max_retries=2": upstream_429_retry_after_7,
        "unknown path": unknown_path,
        "models.list(limit=1)": models_list,
        "models.retrieve": models_retrieve,
        "count_tokens vs usage": count_tokens,
    }


def openai_cases(base_url: str, key: str, model: str) -> dict[str, Callable[[], dict[str, Any]]]:
    sdk = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=60)

    def usage_chunk() -> dict[str, Any]:
        chunks = list(
            sdk.chat.completions.create(
                model=model, max_tokens=64, messages=_user(ECHO), stream=True, stream_options={"include_usage": True}
            )
        )
        last = chunks[-1]
        return {
            "chunks": len(chunks),
            "last.choices": [c.model_dump(exclude_none=True) for c in last.choices],
            "last.usage": last.usage.model_dump(exclude_none=True) if last.usage else None,
        }

    return {"openai SDK: include_usage chunk": usage_chunk}


def limited_cases(base_url: str, key: str, model: str) -> dict[str, Callable[[], dict[str, Any]]]:
    def rate_limited() -> dict[str, Any]:
        sdk = client(base_url, key)
        for sent in range(1, 31):
            try:
                sdk.messages.create(model=model, max_tokens=1, messages=_user("Repeat exactly: hi"))
            except anthropic.RateLimitError as exc:
                seen = {**_error(exc), "requests until the 429": sent}
                break
        else:
            return {"no 429 in 30 requests": True}
        attempts: list[float] = []
        retrying = client(base_url, key, max_retries=2, attempts=attempts)
        started = time.perf_counter()
        try:
            retrying.messages.create(model=model, max_tokens=1, messages=_user("Repeat exactly: hi"))
            seen["with max_retries=2"] = {"served": True}
        except anthropic.APIStatusError as exc:
            seen["with max_retries=2"] = {"raised": type(exc).__name__, "status_code": exc.status_code}
        seen["with max_retries=2"]["attempts"] = len(attempts)
        seen["with max_retries=2"]["gaps between attempts (s)"] = [
            round(b - a, 2) for a, b in itertools.pairwise(attempts)
        ]
        seen["with max_retries=2"]["seconds"] = round(time.perf_counter() - started, 2)
        return seen

    return {"rate limited (429)": rate_limited}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/litellm/sdk_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--models", default="ref-openai,ref-anthropic")
    parser.add_argument("--limited-models", default="")
    parser.add_argument("--out", help="write the observations here as JSON")
    args = parser.parse_args(argv)
    key = os.environ.get("GATEWAY_API_KEY") or os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        print("error: set GATEWAY_API_KEY", file=sys.stderr)
        return 2
    print(f"anthropic {anthropic.__version__}, openai {openai.__version__}", flush=True)
    results: list[dict[str, Any]] = []
    plan = [(m, cases) for m in args.models.split(",") if m] + [(m, openai_cases) for m in args.models.split(",") if m]
    plan += [(m, limited_cases) for m in args.limited_models.split(",") if m]
    for model, make in plan:
        for name, call in make(args.base_url, key, model).items():
            try:
                seen = call()
            except Exception as exc:  # the SDK's exception is the observation
                seen = _error(exc)
            text = json.dumps(seen, default=str)
            if key in text:
                text = text.replace(key, "***")
                seen = json.loads(text)
            results.append({"model": model, "case": name, "sdk": seen})
            print(f"[{model}] {name}: {text}", flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            json.dump(
                {"anthropic": anthropic.__version__, "openai": openai.__version__, "results": results},
                out,
                indent=2,
                default=str,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
