"""What a cross-fit runs: the question set, the folds, the fine-tune recipe every fold model
follows, and how the evaluation over all questions is made. Saved in the crossfit run manifest."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError
from core.evaluation.verdict import PRIMARY_METRIC
from core.finetune.config import FinetuneConfig

MIN_FOLDS = 2
MAX_FOLDS = 20


@dataclass(frozen=True)
class CrossfitConfig:
    """K folds of one recipe. `recipe` is every fine-tune setting but the question set (which
    each fold's own question set fills in)."""

    qa_run_id: str
    folds: int = 5
    seed: int = 42
    validation_share: float = 0.15  # of the other folds' chunks: the trainer's own validation
    recipe: FinetuneConfig = field(default_factory=FinetuneConfig)
    dims: tuple[int, ...] = ()  # evaluated dims; () = the recipe's Matryoshka dims
    include_bm25: bool = False
    hybrid: bool = False
    final_model: bool = False  # also train the model to ship on every question, at the end
    primary_metric: str = PRIMARY_METRIC
    n_resamples: int = 2000
    n_permutations: int = 10000
    confidence: float = 0.95
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.recipe, dict):
            object.__setattr__(self, "recipe", FinetuneConfig.from_dict(self.recipe))
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        if not self.qa_run_id:
            raise ConfigError("Pick a question set (qa run) to cross-fit.")
        if not MIN_FOLDS <= self.folds <= MAX_FOLDS:
            raise ConfigError(
                f"Folds must be {MIN_FOLDS} to {MAX_FOLDS}, not {self.folds}.",
                fix="5 is the usual choice; 10 when questions are few",
            )
        if not 0.0 < self.validation_share < 0.5:
            raise ConfigError(
                f"The validation share must be between 0 and 0.5, not {self.validation_share}.",
                fix="0.15 keeps most of the other folds for training",
            )

    def fold_recipe(self, qa_run_id: str) -> FinetuneConfig:
        """The recipe on one fold's question set."""
        return self.recipe.update(qa_run_id=qa_run_id)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["recipe"] = self.recipe.to_dict()
        data["dims"] = list(self.dims)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CrossfitConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
