"""A scripted chat backend for tests: each call returns the next scripted reply (a string, an
exception to raise, or a function of the messages), and records every request."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from core.llm.backends import Completion, Message

Script = str | Exception | Callable[[Sequence[Message]], "str | Exception"]


class ScriptedBackend:
    """A fake for unit tests only: replies come from a list (in order, the last repeating)
    or from a function of the messages. An Exception in the script is raised."""

    label = "scripted (tests only)"

    def __init__(self, script: Script | Sequence[Script], identity: str = "scripted") -> None:
        self._script: list[Script] = list(script) if isinstance(script, list | tuple) else [script]  # type: ignore[arg-type]
        self.identity = identity
        self.calls: list[list[Message]] = []
        self._lock = threading.Lock()

    def chat(
        self,
        messages: Sequence[Message],
        *,
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None,
    ) -> Completion:
        with self._lock:
            index = len(self.calls)
            self.calls.append(list(messages))
            item = self._script[min(index, len(self._script) - 1)]
        if callable(item) and not isinstance(item, Exception):
            item = item(messages)
        if isinstance(item, Exception):
            raise item
        prompt_tokens = sum(len(m.get("content", "").split()) for m in messages)
        return Completion(
            text=item,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(item.split()),
            model="scripted",
        )
