"""Issue 19: provider failures as they really arrive, through the classifier.

Every case of ``tests/data/provider_errors.jsonl`` is an error answer someone really received
(a public bug report or the provider's docs, linked in ``source``): its status, headers and body,
the provider (a catalogue id, or a gateway and what it wraps) and the kind that sends the user
the right way. A failing case is named by its provider and source. Add a case whenever a
provider changes what it sends: keep the body as received (trim long ones and say so in ``note``).

Fields: ``provider``, ``protocol``, ``status`` (null: an error inside a 200 answer or stream),
``headers``, ``body`` (JSON as received, or text), ``source``, ``kind``; optional ``wait``
(seconds the answer asks for), ``resetsAt`` (when a billing limit or plan window resets),
``plan`` (a plan's allowance, not the balance), ``baseUrl`` (for providers outside the
catalogue), ``via`` (a gateway in between) and ``note``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from phasewise.providers.catalogue import ProviderSpec, builtin, family_of
from phasewise.providers.classify import Origin, classify

CORPUS = Path(__file__).parent / "data" / "provider_errors.jsonl"
CASES: list[dict[str, Any]] = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()
                               if line.strip()]


def case_id(case: dict[str, Any]) -> str:
    where = re.sub(r"^https?://(github\.com/)?", "", case["source"]).rstrip("/")
    return f"{case['provider']}:{where}"


def origin_of(case: dict[str, Any]) -> Origin:
    spec = builtin(case["provider"]) or ProviderSpec(case["provider"], "openai", case.get("baseUrl", ""))
    return Origin(family_of(spec), case["protocol"])


def test_the_corpus_is_well_formed() -> None:
    assert len(CASES) >= 80
    for case in CASES:
        assert case["source"].startswith("https://"), case
        assert {"provider", "protocol", "status", "headers", "body", "kind"} <= set(case), case
    # every catalogue provider family is covered, and the gateways
    families = {origin_of(c).family for c in CASES}
    assert {"anthropic", "openai", "zai", "deepseek", "qwen", "minimax", "moonshot", "openrouter", "ollama",
            "lmstudio", "vllm", "litellm"} <= families


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_a_real_answer_is_classified_for_the_right_way_out(case: dict[str, Any]) -> None:
    err = classify(case["status"], case["body"], case["headers"], origin=origin_of(case))
    assert str(err.kind) == case["kind"], f"{case['source']}: {err.kind} ({err.detail})"
    # the provider's own words reach the user, never just "HTTP 400"
    assert not re.fullmatch(r"HTTP \d+|no details given", err.detail), case["source"]
    if "wait" in case:
        assert err.retry_after == pytest.approx(case["wait"], abs=0.01), case["source"]
    if "plan" in case:
        assert err.plan_limit is case["plan"], case["source"]
    if "resetsAt" in case:
        assert err.resets_at == datetime.fromisoformat(case["resetsAt"]), case["source"]
