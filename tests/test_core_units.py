"""Unit tests of the LSP-free core: settings, catalogue, edits, findings, the edit conversion."""

from __future__ import annotations

import random
from datetime import UTC

import pytest
from lsprotocol import types

from phasewise.phases.documents import (
    AnswerError,
    Document,
    LineRange,
    apply_edits,
    parse_edits,
    parse_findings,
    structured_answer,
)
from phasewise.phases.prompts import number_lines, user_prompt
from phasewise.providers.catalogue import BUILTIN, builtin, known_ids
from phasewise.router.routes import Keyring, RouteResolver
from phasewise.settings import json_schema, load_settings
from tests.helpers import apply_text_edits


def test_model_reference_splits_at_the_first_slash() -> None:
    loaded = load_settings({"phases": {
        "plan": {"model": "openrouter/anthropic/claude-sonnet-4.5"},
        "code": {"model": {"provider": "zai", "model": "glm-4.7"}},
    }})
    assert loaded.issues == ()
    plan, code = loaded.settings.phases["plan"].model, loaded.settings.phases["code"].model
    assert plan is not None and (plan.provider, plan.model) == ("openrouter", "anthropic/claude-sonnet-4.5")
    assert code is not None and (code.provider, code.model) == ("zai", "glm-4.7")


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        ({"phases": {"code": {"model": "glm-4.7"}}}, "phasewise.phases.code.model", "<provider>/<model-id>"),
        ({"phases": {"review": {"modle": "a/b"}}}, "phasewise.phases.review.modle", "unknown setting"),
        ({"phases": {"plan": {"temperature": 9}}}, "phasewise.phases.plan.temperature", "less than or equal to 2"),
        ({"providers": {"zai": {"baseUrl": "ftp://x"}}}, "phasewise.providers.zai.baseUrl", "http:// or https://"),
        ({"providers": {"x": {"headers": {"Authorization": "Bearer k"}}}}, "phasewise.providers.x", "apiKeyEnv"),
        ({"retry": {"maxAttempts": 0}}, "phasewise.retry.maxAttempts", "greater than or equal to 1"),
        ({"phases": []}, "phasewise.phases", "expected an object"),
        ({"typo": 1}, "phasewise.typo", "unknown setting"),
        (["x"], "phasewise", "expected an object"),
    ],
)
def test_wrong_settings_name_the_key_path(raw: object, path: str, words: str) -> None:
    loaded = load_settings(raw)
    assert loaded.issues, raw
    issue = loaded.issues[0]
    assert issue.path.startswith(path), issue
    assert words in issue.message, issue


def test_one_wrong_phase_spares_the_others() -> None:
    loaded = load_settings({"phases": {"plan": {"model": "openai/gpt-5"}, "code": {"model": 3}}})
    assert "plan" in loaded.settings.phases and "code" not in loaded.settings.phases
    resolver = RouteResolver(loaded, Keyring({}))
    assert resolver.phase("plan").problem is None
    problem = resolver.phase("code").problem
    assert problem is not None and problem.kind == "config" and "phasewise.phases.code.model" in problem.message


def test_catalogue_has_every_documented_provider() -> None:
    documented = {"anthropic", "openai", "zai", "zai-anthropic", "zhipu", "deepseek", "qwen", "minimax",
                  "moonshot", "openrouter", "ollama", "lmstudio", "vllm", "litellm", "llamacpp",
                  "llamacpp-anthropic"}
    assert documented <= set(BUILTIN)
    # both protocols where a provider offers both
    assert {builtin("deepseek-anthropic").protocol, builtin("minimax-anthropic").protocol} == {"anthropic"}  # type: ignore[union-attr]
    for spec in BUILTIN.values():
        assert spec.base_url.startswith("http") and spec.protocol in {"openai", "anthropic"}
        assert spec.requires_key == bool(spec.key_envs) or spec.id in {"vllm", "llamacpp", "llamacpp-anthropic"}
    assert {"sim-claude", "sim-glm", "sim-gpt"} <= set(known_ids())


def test_settings_override_and_declare_providers() -> None:
    loaded = load_settings({"providers": {
        "zai": {"baseUrl": "https://api.z.ai/api/coding/paas/v4", "models": {"glm-4.7": {"contextWindow": 1000}}},
        "team": {"protocol": "openai", "baseUrl": "https://llm.example.com/v1", "apiKeyEnv": ["TEAM_A", "TEAM_B"],
                 "models": {"glm-4.7": {"toolCalling": False}}},
    }})
    resolver = RouteResolver(loaded, Keyring({"TEAM_B": "k-b"}))
    zai = resolver.provider("zai")
    team = resolver.provider("team")
    assert not hasattr(zai, "kind") and not hasattr(team, "kind")
    assert zai.base_url.endswith("/coding/paas/v4")  # type: ignore[union-attr]
    assert zai.models["glm-4.7"].context_window == 1000  # type: ignore[union-attr]
    assert zai.models["glm-4.7"].tool_calling is True  # catalogue fields not overridden stay  # type: ignore[union-attr]
    assert team.key_envs == ("TEAM_A", "TEAM_B")  # type: ignore[union-attr]
    assert [k.env for k in resolver.keys(team)] == ["TEAM_B"]  # type: ignore[arg-type]
    unknown = resolver.provider("nowhere", phase="plan", model="m")
    assert getattr(unknown, "kind", None) == "config"


def test_schema_describes_every_field() -> None:
    schema = json_schema()

    def walk(node: dict, where: str) -> None:  # type: ignore[type-arg]
        for name, prop in node.get("properties", {}).items():
            assert prop.get("description") or "$ref" in prop or "allOf" in prop, f"{where}.{name}"
    walk(schema, "phasewise")
    for name, definition in schema.get("$defs", {}).items():
        walk(definition, name)


DOC = "a\nb\nc\nd"


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        ([{"start_line": 2, "end_line": 2, "new_text": "B"}], "a\nB\nc\nd"),
        ([{"start_line": 1, "end_line": 0, "new_text": "top"}], "top\na\nb\nc\nd"),
        ([{"start_line": 5, "end_line": 4, "new_text": "end"}], "a\nb\nc\nd\nend"),
        ([{"start_line": 2, "end_line": 3, "new_text": ""}], "a\nd"),
        ([{"start_line": 4, "end_line": 4, "new_text": ""}], "a\nb\nc"),
        ([{"start_line": 1, "end_line": 1, "new_text": "x\ny"}, {"start_line": 4, "end_line": 4, "new_text": "z"}],
         "x\ny\nb\nc\nz"),
    ],
)
def test_line_edits(edits: list[dict[str, object]], expected: str) -> None:
    doc = Document("file:///t.txt", DOC)
    parsed = parse_edits({"edits": edits}, doc, doc.clamp(None))
    assert apply_edits(DOC, parsed) == expected


@pytest.mark.parametrize(
    ("edits", "words"),
    [
        ([{"start_line": 1, "end_line": 2, "new_text": "x"}, {"start_line": 2, "end_line": 2, "new_text": "y"}],
         "overlap"),
        ([{"start_line": 9, "end_line": 9, "new_text": "x"}], "outside"),
        ([{"start_line": "1", "end_line": 1, "new_text": "x"}], "whole number"),
        ([{"start_line": 1, "end_line": 1, "new_text": 5}], "must be text"),
        ("nope", "no `edits` list"),
    ],
)
def test_bad_edit_sets_are_refused_whole(edits: object, words: str) -> None:
    doc = Document("file:///t.txt", DOC)
    with pytest.raises(AnswerError, match=words):
        parse_edits({"edits": edits}, doc, doc.clamp(None))


def test_edits_must_stay_in_the_selected_range() -> None:
    doc = Document("file:///t.txt", DOC)
    with pytest.raises(AnswerError, match="outside lines 2-3"):
        parse_edits({"edits": [{"start_line": 1, "end_line": 1, "new_text": "x"}]}, doc, LineRange(1, 2))


def test_structured_answer_from_text_block_and_findings_are_clamped() -> None:
    text = 'Here you go.\n```json\n{"findings": [{"start_line": 99, "end_line": 120, "severity": "SEVERE",' \
           ' "message": "too far"}, {"start_line": 1, "end_line": 1, "severity": "error", "message": ""}]}\n```'
    doc = Document("file:///t.txt", DOC)
    answer = structured_answer(None, text)
    findings = parse_findings(answer, doc, doc.clamp(None))
    assert [(f.start, f.end, f.severity) for f in findings] == [(3, 3, "warning")]
    with pytest.raises(AnswerError):
        structured_answer(None, "no json here")


def test_prompt_numbers_lines_from_the_range() -> None:
    assert number_lines("x\ny", 10).split("\n") == ["  10| x", "  11| y"]
    prompt = user_prompt(instruction="do", path="/a.py", language="python", text="x", first_line=3, plan="p")
    assert '<document path="/a.py" language="python" first_line="3" last_line="3">' in prompt
    assert "<plan>\np\n</plan>" in prompt


def test_minimal_edits_turn_old_into_new() -> None:
    """The TextEdits the server sends (one per changed hunk) reproduce the new text, unicode included."""
    from pygls.workspace import PositionCodec

    from phasewise.edge.edits import minimal_edits

    codec = PositionCodec(types.PositionEncodingKind.Utf32)
    rnd = random.Random(7)
    alphabet = ["a", "b", "\n", " ", "é"]
    for _ in range(300):
        old = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30)))
        new = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30)))
        edits = minimal_edits(codec, old, new)
        assert apply_text_edits(old, edits) == new, (old, new, edits)


def test_what_counts_as_a_secret_to_mask() -> None:
    """Key-named variables are masked wherever they show up, but a path is not a key (masking
    ``SSH_KEY_PATH``'s value would corrupt an edit of a file that mentions it); a variable any
    route reads as its key is masked whatever its name."""
    from phasewise.problems import redact, redact_known, register_environment_secrets

    register_environment_secrets({"UNIT_TEST_API_KEY": "unit-test-key-0123456789abcdef",
                                  "UNIT_SSH_KEY": "/home/me/.ssh/unit_test_id_ed25519",
                                  "UNIT_KEY_PATH": "unit-test-not-a-key-0123456789"})
    assert redact_known("x unit-test-key-0123456789abcdef y") == "x [redacted] y"
    assert redact_known("cat /home/me/.ssh/unit_test_id_ed25519") == "cat /home/me/.ssh/unit_test_id_ed25519"
    assert "unit-test-not-a-key-0123456789" in redact_known("unit-test-not-a-key-0123456789")

    loaded = load_settings({"providers": {"corp": {"protocol": "openai", "baseUrl": "http://127.0.0.1:1/v1",
                                                   "apiKeyEnv": "CORP_LLM"}}})
    resolver = RouteResolver(loaded, Keyring({"CORP_LLM": "corp-llm-value-9876543210zyx"}))
    spec = resolver.provider("corp")
    assert not hasattr(spec, "kind"), spec  # a provider, not a problem
    assert [k.env for k in resolver.keys(spec)] == ["CORP_LLM"]  # type: ignore[arg-type]
    assert redact("the server said: corp-llm-value-9876543210zyx") == "the server said: [redacted]"


def test_a_rate_limits_retry_title_counts_down_to_when_it_lifts() -> None:
    """Issue 23 item 6: "Retry … once the limit lifts (…, in 75 s)" says the seconds left each time
    the fixes are asked for, not the wait the provider gave when the problem was published."""
    from datetime import datetime, timedelta

    from phasewise.edge.fixes import _when

    at = datetime(2026, 12, 8, 14, 3, 12, tzinfo=UTC)
    problem = {"retryAfterSeconds": 75.0, "retryAt": at.isoformat()}
    assert _when(problem, now=at - timedelta(seconds=75)) == "14:03:12, in 75 s"
    assert _when(problem, now=at - timedelta(seconds=30)) == "14:03:12, in 30 s"
    assert _when(problem, now=at + timedelta(seconds=5)) == "14:03:12, in 0 ms"
    assert _when({"retryAfterSeconds": 12.0}) == "in 12 s"  # no time to count to: the provider's wait
    assert _when({"retryAt": at.isoformat()}) is None
