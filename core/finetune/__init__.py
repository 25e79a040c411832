"""Fine-tuning: MatryoshkaLoss over MNRL with sentence-transformers' trainer. Config and
guard-rails, training data and hard negatives, the validation evaluator, the trainer and its
progress callback, start/stop/resume as a background job, the run's files, and the model card."""
