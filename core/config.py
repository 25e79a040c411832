"""Where data lives and what the environment configures (LLM server, Chroma server, offline flags)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "RAGBENCH_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO_ROOT / "data" / "sample"

# Environment that keeps every library off the network and off telemetry. Set before
# ragas, chromadb, transformers or huggingface_hub are imported.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "RAGAS_DO_NOT_TRACK": "true",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply_offline_env(force: bool = False) -> None:
    """Set the offline and no-telemetry variables unless the user set them already.

    `RAGBENCH_ONLINE=1` leaves HF_HUB_OFFLINE unset so hub ids can be downloaded.
    """
    online = os.environ.get("RAGBENCH_ONLINE") == "1"
    for key, value in OFFLINE_ENV.items():
        if online and key in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}:
            continue
        if force:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)


def data_dir() -> Path:
    """The data directory: `$RAGBENCH_DATA_DIR`, else `./ragbench_data` beside the app."""
    raw = os.environ.get(DATA_DIR_ENV)
    path = Path(raw).expanduser() if raw else REPO_ROOT / "ragbench_data"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class LLMSettings:
    """How to reach the LLM. `backend` is "openai" (any OpenAI-compatible server) or "embedded"."""

    backend: str = "embedded"
    base_url: str = ""
    model: str = ""
    api_key: str = ""  # never written to disk
    timeout_s: float = 60.0
    max_concurrency: int = 4
    max_retries: int = 3
    supports_n: bool = False  # whether the server accepts n>1 completions per request

    def redacted(self) -> dict[str, object]:
        """A dict fit for a manifest: everything but the key."""
        return {
            "backend": self.backend,
            "base_url": self.base_url,
            "model": self.model,
            "timeout_s": self.timeout_s,
            "max_concurrency": self.max_concurrency,
            "max_retries": self.max_retries,
            "api_key_set": bool(self.api_key),
        }


@dataclass(frozen=True)
class ChromaSettings:
    """Embedded persistent Chroma by default; a server when `host` is set."""

    host: str = ""
    port: int = 8000
    token: str = ""  # never written to disk
    ssl: bool = False

    @property
    def is_server(self) -> bool:
        return bool(self.host)


def chroma_env(settings: ChromaSettings) -> dict[str, str]:
    """The environment that makes `chroma_settings_from_env` return `settings` in a child
    process (a background job): the token travels in memory, never on disk."""
    return {
        "RAGBENCH_CHROMA_HOST": settings.host,
        "RAGBENCH_CHROMA_PORT": str(settings.port),
        "RAGBENCH_CHROMA_TOKEN": settings.token,
        "RAGBENCH_CHROMA_SSL": "1" if settings.ssl else "0",
    }


def llm_env(settings: LLMSettings) -> dict[str, str]:
    """The environment that makes `llm_settings_from_env` return `settings` in a child process
    (a background job): the key travels in memory, never on disk."""
    return {
        "RAGBENCH_LLM_BACKEND": settings.backend,
        "RAGBENCH_LLM_BASE_URL": settings.base_url,
        "RAGBENCH_LLM_MODEL": settings.model,
        "RAGBENCH_LLM_API_KEY": settings.api_key,
        "RAGBENCH_LLM_TIMEOUT": str(settings.timeout_s),
        "RAGBENCH_LLM_CONCURRENCY": str(settings.max_concurrency),
        "RAGBENCH_LLM_SUPPORTS_N": "1" if settings.supports_n else "0",
    }


def llm_settings_from_env() -> LLMSettings:
    """LLM settings from `RAGBENCH_LLM_*` (or `OPENAI_*`) variables."""
    base_url = os.environ.get("RAGBENCH_LLM_BASE_URL") or os.environ.get("OPENAI_BASE_URL", "")
    backend = os.environ.get("RAGBENCH_LLM_BACKEND") or ("openai" if base_url else "embedded")
    return LLMSettings(
        backend=backend,
        base_url=base_url,
        model=os.environ.get("RAGBENCH_LLM_MODEL", ""),
        api_key=os.environ.get("RAGBENCH_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY", ""),
        timeout_s=float(os.environ.get("RAGBENCH_LLM_TIMEOUT", "60")),
        max_concurrency=int(os.environ.get("RAGBENCH_LLM_CONCURRENCY", "4")),
        supports_n=os.environ.get("RAGBENCH_LLM_SUPPORTS_N", "0") == "1",
    )


def chroma_settings_from_env() -> ChromaSettings:
    """Chroma settings from `RAGBENCH_CHROMA_HOST`, `_PORT`, `_TOKEN`, `_SSL`."""
    return ChromaSettings(
        host=os.environ.get("RAGBENCH_CHROMA_HOST", ""),
        port=int(os.environ.get("RAGBENCH_CHROMA_PORT", "8000")),
        token=os.environ.get("RAGBENCH_CHROMA_TOKEN", ""),
        ssl=os.environ.get("RAGBENCH_CHROMA_SSL", "0") == "1",
    )
