"""Questions: what the model is trained and judged on. Prompts and LLM generation, the quality
gate, gold chunks and leak checks (leakage.py), splits by chunk, the QA dataset contract, the
review grid, and question sets in (importing, columns) and out (exporting), plus the sample set."""
