"""Lenient JSON extraction from LLM replies."""

from __future__ import annotations

import pytest

from core.errors import LLMError
from core.jsonparse import extract_json


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
        ('Sure! Here it is:\n```\n{"a": 1}\n```\nHope that helps.', {"a": 1}),
        ('Here you go: {"q": ["x?", "y?"]} done', {"q": ["x?", "y?"]}),
        ('{"q": ["x?", "y?",],}', {"q": ["x?", "y?"]}),
        ('["a", "b"]', ["a", "b"]),
        ('{"q": ["first?", "second?", "thi', {"q": ["first?", "second?"]}),
        ('```json\n{"q": ["one?"', {"q": ["one?"]}),
    ],
)
def test_extracts_and_repairs(reply, expected):
    assert extract_json(reply) == expected


@pytest.mark.parametrize("reply", ["", "   ", "no json here at all", "QUESTION #1\n"])
def test_unparseable_raises_parse_error_with_raw(reply):
    with pytest.raises(LLMError) as info:
        extract_json(reply)
    assert info.value.kind == "parse"
    assert info.value.raw == reply
