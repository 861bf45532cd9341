"""The fixture corpus (conformance/fixtures/): every cassette replays offline with the verdict its index gives.

This is the harness's own regression suite: a change to a check, the grammar, the schemas or the transport that
changes what the suite concludes about a documented real-world deviation fails here, naming the cassette.
Rebuild with `python -m conformance.fixtures.build` (docs/cassettes.md) when the change is meant.
"""

from __future__ import annotations

import json
import re

import pytest

from conformance import schemas
from conformance.fixtures import CASSETTES, CorpusEntry, load_index, replay_entry
from conformance.fixtures.build import REFERENCE, SCENARIOS, all_scenarios, is_up_to_date
from conformance.gateway.faults import FAULTS

ENTRIES = load_index()
# The behaviours the vendor pages under ../shared/seeds/ document, each with its cassette.
VENDOR_BEHAVIOURS = {
    "vendor-openai-shaped-error",
    "vendor-typeless-error-envelope",
    "vendor-invented-429-types",
    "vendor-stream-by-default",
    "vendor-bearer-only",
    "vendor-billing-fields",
    "vendor-402-insufficient-credits",
    "vendor-413-input-too-large",
    "vendor-503-upstream-error",
    "vendor-openai-stream-done",
}
KEY_SHAPED = re.compile(r"sk-(?:ant|ref)-[A-Za-z0-9_-]{8,}")


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_every_cassette_replays_offline_with_its_verdict(entry: CorpusEntry) -> None:
    outcome = replay_entry(entry)
    problems = outcome.problems()
    assert not problems, f"{entry.name} ({entry.title}):\n  " + "\n  ".join(problems)


def test_the_index_lists_every_cassette_once() -> None:
    names = [e.name for e in ENTRIES]
    assert len(names) == len(set(names))
    assert {p.stem for p in CASSETTES.glob("*.json")} == set(names)


def test_every_cassette_matches_its_schema_holds_no_key_and_is_small() -> None:
    validator = schemas.validator("cassette/cassette")
    total = 0
    for path in sorted(CASSETTES.glob("*.json")):
        text = path.read_text(encoding="utf-8")
        assert validator.errors(json.loads(text)) == (), path.name
        assert not KEY_SHAPED.search(text), f"{path.name} holds something shaped like a key"
        assert len(text) < 128 * 1024, f"{path.name} is {len(text)} bytes: keep cassettes to the probes that matter"
        total += len(text)
    assert total < 2 * 1024 * 1024


def test_the_corpus_covers_section_7_the_vendor_pages_and_every_fault() -> None:
    names = {e.name for e in ENTRIES}
    hand_built = [e for e in ENTRIES if e.origin == "hand-built"]
    items = {int(n) for e in hand_built for n in re.findall(r"protocol\.md 7\.(\d+)", e.source)}
    assert items == set(range(1, 21)), (
        f"protocol.md section 7 items without a hand-built cassette: {set(range(1, 21)) - items}"
    )
    assert names >= VENDOR_BEHAVIOURS
    missing = sorted(f"fault-{name}" for name in FAULTS if f"fault-{name}" not in names)
    assert not missing, (
        f"record them: python -m conformance.fixtures.build {' '.join(missing)} (and add them to FAULT_PROBES)"
    )
    assert any(e.verdict == "conformant" for e in hand_built) and any(e.unsupported for e in ENTRIES)


def test_the_index_says_what_the_builder_declares() -> None:
    declared = {s.name: s.entry() for s in all_scenarios()}
    for entry in ENTRIES:
        if entry.name in declared:  # other tools add their own recordings (tools/litellm/record_fixture.py)
            assert entry == declared[entry.name]


def test_the_hand_built_cassettes_are_what_the_builder_makes_from_the_reference() -> None:
    stale = [s.name for s in SCENARIOS if s.answer is not None and not is_up_to_date(s)]
    assert not stale, f"rebuild them: python -m conformance.fixtures.build --hand-built ({', '.join(stale)})"
    assert REFERENCE in {e.name for e in ENTRIES}
