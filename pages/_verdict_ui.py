"""The verdict of a retrieval evaluation as the pages show it: each tuned model's headline first,
then the hybrids' and BM25 alone's under their own caption (the Retrieval eval page and the Runs
page's comparison show the same lines), then which lever helps and reranking's own tests."""

from __future__ import annotations

import streamlit as st

from core.evaluation.results import RetrievalEvalResult


def verdict_ui(result: RetrievalEvalResult) -> None:
    """The headline verdict of each tuned model (core.evaluation.verdict), first thing on the
    page; then the hybrids' and BM25 alone's, under their own caption."""
    lexical = set(result.model_labels(("hybrid", "bm25")))
    said = False
    for headline in result.headlines():
        if headline.model in lexical and not said:
            st.caption("BM25 and the hybrids (lexical baselines), each against the base:")
            said = True
        if headline.better and not headline.worse:
            st.success(headline.text)
        elif headline.worse:
            st.error(headline.text)
        else:
            st.info(headline.text)
    if result.bm25_line():
        if not said:
            st.caption("BM25 (a lexical baseline) against the base:")
        st.info(result.bm25_line())
    for line in result.rerank_lines():
        st.info(line)
    if result.levers_text():
        st.info(result.levers_text(), icon=":material/balance:")
