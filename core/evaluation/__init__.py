"""Retrieval evaluation: base vs tuned per Matryoshka dim. Metrics (equal to sentence-transformers'
evaluator), statistics (bootstrap intervals, paired tests, power), the verdict (Holm families,
one text for page, CLI, report and card), exact search and BM25, flips, the Chroma check, the
general-similarity check, and the stage that saves a retrieval_eval run."""
