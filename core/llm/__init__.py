"""The LLM client and its backends: an OpenAI-compatible server, or the embedded offline model."""
