"""Cross-fitted evaluation: K fine-tunes of one recipe, each scoring the questions it never saw,
so every question is a held-out test question (config, folds, job, scoring, plan)."""
