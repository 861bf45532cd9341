#!/usr/bin/env python3
"""Record LiteLLM's answers to a chosen set of probes into the fixture corpus (conformance/fixtures/).

    python tools/litellm/run.py --serve                      # in one shell: the stack, with $LITELLM_MASTER_KEY set
    GATEWAY_API_KEY=$LITELLM_MASTER_KEY python tools/litellm/record_fixture.py [--write-index]

For each LiteLLM route it records the probes of FIXTURES live (as conformance/fixtures/build.py records the
reference gateway), rebases the cassette to the corpus URL, redacts the key, writes
conformance/fixtures/cassettes/litellm-<model>.json, replays it offline and prints the corpus index entry: the
verdict and the checks that failed on the replay. `--write-index` adds (or replaces) the `litellm-*` entries in
conformance/fixtures/index.json; the other entries are left as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from conformance.cassette import Recorder, write_cassette  # noqa: E402
from conformance.fixtures import CASSETTES, INDEX, CorpusEntry, replay_entry, run_probes  # noqa: E402
from conformance.fixtures.build import BASE_URL, rebase  # noqa: E402
from conformance.runner import ConformanceRun  # noqa: E402
from conformance.target import Target, key_from_env  # noqa: E402

LITELLM = "LiteLLM proxy 1.106.2 in front of the reference gateway (tools/litellm/run.py), recorded live"
# What each route's cassette shows, and the probes that show it: small, one probe per finding where possible.
FIXTURES = {
    "ref-openai": (
        "LiteLLM 1.106.2, Anthropic /v1/messages translated to an OpenAI upstream: input_tokens 0 in message_start, "
        "stop_sequence lost, chatcmpl- ids, 500 for invalid requests, OpenAI-shaped auth errors, OpenAI-shaped models",
        (
            "messages_basic",
            "messages_stream",
            "stop_sequences",
            "tool_forced_stream",
            "count_tokens",
            "models",
            "openai_chat_stream",
            "error_empty_text_block",
            "error_malformed_json",
            "error_missing_key",
            "error_wrong_key",
            "error_unknown_path",
        ),
    ),
    "ref-anthropic": (
        "LiteLLM 1.106.2, Anthropic-native passthrough: unknown fields dropped, OpenAI-shaped auth errors, "
        "OpenAI-shaped model object, usage chunk with choices, no request-id",
        (
            "messages_basic",
            "messages_stream",
            "thinking_stream",
            "count_tokens",
            "models",
            "openai_chat_stream",
            "error_unknown_field",
            "error_malformed_json",
            "error_missing_key",
            "error_wrong_key",
            "error_unknown_path",
        ),
    ),
}


def record(base_url: str, model: str, probes: tuple[str, ...], title: str) -> Path:
    """Record the probes against the running proxy; the cassette file, rebased and redacted."""
    key = key_from_env()
    if key is None:
        raise SystemExit("set GATEWAY_API_KEY to the proxy's master key")
    target = Target(base_url, key, model=model)
    recorder = Recorder(target, note=f"litellm-{model}: {title}")
    run = ConformanceRun(target, transport=recorder.transport())
    with recorder.sdk_requests():
        for pid in probes:
            recorder.context = pid
            run_probes(run, [pid])
    cassette = rebase(recorder.cassette(), BASE_URL)
    return write_cassette(cassette, CASSETTES / f"litellm-{model}.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="record_fixture.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:4400")
    parser.add_argument("--write-index", action="store_true", help="add the entries to conformance/fixtures/index.json")
    args = parser.parse_args(argv)
    entries = []
    for model, (title, probes) in FIXTURES.items():
        path = record(args.base_url, model, probes, title)
        draft = CorpusEntry(f"litellm-{model}", title, LITELLM, "recorded", probes, "non-conformant")
        outcome = replay_entry(draft, path=path)
        if outcome.misses or outcome.unused:
            print(f"{path.name}: the replay does not match the recording: {outcome.problems()}", file=sys.stderr)
            return 1
        entry = CorpusEntry(
            draft.name,
            title,
            LITELLM,
            "recorded",
            probes,
            outcome.report.verdict,
            fail=tuple(sorted(outcome.failed)),
            unsupported=tuple(sorted(outcome.unsupported)),
        )
        entries.append(entry.to_json())
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size} B, {outcome.report.verdict}, failed {list(entry.fail)}")
    print(json.dumps(entries, indent=2))
    if args.write_index:
        index = json.loads(INDEX.read_text(encoding="utf-8"))
        kept = [e for e in index["entries"] if not e["name"].startswith("litellm-")]
        index["entries"] = kept + entries
        INDEX.write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{INDEX.relative_to(ROOT)}: {len(entries)} litellm entries written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
