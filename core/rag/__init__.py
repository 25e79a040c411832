"""RAG evaluation: a LangChain chain per retriever answers the test questions, RAGAS scores the
answers (judged and judge-free metrics, every failure counted), summaries with intervals and
paired deltas, and the answers side by side."""
