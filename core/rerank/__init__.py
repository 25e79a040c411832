"""The reranker stage: a cross-encoder trained on a question set's training pairs with hard
negatives (config, data, trainer, control, job, model_card); core.rerankers loads and applies it."""
