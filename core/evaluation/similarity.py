"""The general-similarity check: Spearman (scored pairs) or average precision (0/1 pairs) of each
model's cosine, with bootstrap intervals, so a domain gain that breaks general similarity shows."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from core.embeddings import (
    encode_texts,
)
from core.errors import InputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from core.evaluation.config import RetrievalEvalConfig


@dataclass(frozen=True)
class SimilarityPairs:
    """Sentence pairs with a similarity score (STS-style) or a 0/1 label."""

    kind: Literal["scored", "labelled"]
    sentences1: tuple[str, ...]
    sentences2: tuple[str, ...]
    values: tuple[float, ...]
    source: str = ""

    def __len__(self) -> int:
        return len(self.values)


def load_similarity_pairs(
    source: str | Path | bytes | IO[str] | IO[bytes], name: str = ""
) -> SimilarityPairs:
    """Read a CSV with columns sentence1, sentence2 and either score (any scale) or label (0/1)."""
    label = name or (Path(source).name if isinstance(source, str | Path) else "uploaded CSV")
    try:
        if isinstance(source, bytes):
            frame = pd.read_csv(io.BytesIO(source))
        else:
            frame = pd.read_csv(source)
    except FileNotFoundError as exc:
        raise InputError(f"The pairs file {label} does not exist.", fix="upload a CSV") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{label} is not a readable CSV.", found=str(exc)[:200]) from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    has = set(frame.columns)
    if not {"sentence1", "sentence2"} <= has or not ({"score", "label"} & has):
        raise InputError(
            f"{label} needs the columns sentence1, sentence2 and score (or label).",
            found=f"columns {', '.join(frame.columns) or 'none'}",
            fix="rename the columns; use score for graded similarity, label for 0/1 pairs",
        )
    kind: Literal["scored", "labelled"] = "scored" if "score" in has else "labelled"
    col = "score" if kind == "scored" else "label"
    frame = frame.dropna(subset=["sentence1", "sentence2", col])
    values = pd.to_numeric(frame[col], errors="coerce")
    if values.isna().any():
        bad = frame.loc[values.isna(), col].astype(str).head(3).tolist()
        raise InputError(f"{label}: the {col} column must be numeric.", found=f"values {bad}")
    if len(frame) < 5:
        raise InputError(
            f"{label} has {len(frame)} usable pairs.",
            fix="give at least 5 pairs (40+ for a useful check)",
        )
    if kind == "labelled":
        if not set(values.unique()) <= {0, 1}:
            raise InputError(
                f"{label}: labels must be 0 or 1.", found=f"values {sorted(values.unique())[:5]}"
            )
        if values.nunique() < 2:
            raise InputError(
                f"{label}: every label is {int(values.iloc[0])}.",
                fix="include both similar (1) and dissimilar (0) pairs",
            )
    elif values.nunique() < 2:
        raise InputError(
            f"{label}: every score is the same.", fix="give pairs with different scores"
        )
    return SimilarityPairs(
        kind=kind,
        sentences1=tuple(frame["sentence1"].astype(str)),
        sentences2=tuple(frame["sentence2"].astype(str)),
        values=tuple(float(v) for v in values),
        source=label,
    )


def pair_cosines(
    model: SentenceTransformer, pairs: SimilarityPairs, batch_size: int = 32
) -> np.ndarray:
    """Cosine similarity of each pair (n,), encoding without prompts as sentence-transformers'
    similarity evaluators do."""
    a = encode_texts(model, list(pairs.sentences1), batch_size=batch_size)  # (n, d)
    b = encode_texts(model, list(pairs.sentences2), batch_size=batch_size)  # (n, d)
    return np.sum(a.astype(np.float64) * b.astype(np.float64), axis=1)


def similarity_score(cosines: np.ndarray, pairs: SimilarityPairs) -> float:
    """Spearman of cosine vs score (scored pairs) or average precision of cosine (labelled)."""
    values = np.asarray(pairs.values)
    if pairs.kind == "scored":
        from scipy.stats import spearmanr

        return float(spearmanr(values, cosines).statistic)
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(values.astype(int), cosines))


def compare_similarity(
    models: dict[str, Any],
    pairs: SimilarityPairs,
    base_label: str,
    n_resamples: int = 1000,
    seed: int = 0,
    batch_size: int = 32,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Spearman (scored pairs) or AP (labelled pairs) for each model, with bootstrap CIs (at
    `confidence`) over pairs and each model's paired delta against the base."""
    metric = "spearman_cosine" if pairs.kind == "scored" else "ap_cosine"
    cos = {label: pair_cosines(m, pairs, batch_size) for label, m in models.items()}
    rng = np.random.default_rng(seed)
    n = len(pairs)
    samples = rng.integers(0, n, size=(n_resamples, n))
    values = np.asarray(pairs.values)

    def boot(label: str) -> np.ndarray:
        out = np.full(n_resamples, np.nan)
        for i, idx in enumerate(samples):
            sub = SimilarityPairs(pairs.kind, (), (), tuple(values[idx]))
            if np.unique(values[idx]).size < 2:
                continue  # a resample with one class or one score has no defined metric
            out[i] = similarity_score(cos[label][idx], sub)
        return out

    boots = {label: boot(label) for label in models}
    tail = (1 - confidence) / 2
    rows = []
    for label in models:
        value = similarity_score(cos[label], pairs)
        low, high = np.nanquantile(boots[label], [tail, 1 - tail])
        row = {
            "model": label,
            "metric": metric,
            "value": value,
            "ci_low": float(low),
            "ci_high": float(high),
            "delta": np.nan,
            "delta_ci_low": np.nan,
            "delta_ci_high": np.nan,
            "n_pairs": n,
            "source": pairs.source,
        }
        if label != base_label and base_label in cos:
            diff = boots[label] - boots[base_label]
            d_low, d_high = np.nanquantile(diff, [tail, 1 - tail])
            row.update(
                delta=value - similarity_score(cos[base_label], pairs),
                delta_ci_low=float(d_low),
                delta_ci_high=float(d_high),
            )
        rows.append(row)
    return pd.DataFrame(rows)


def similarity_check(
    config: RetrievalEvalConfig,
    models: dict[str, Any],
    base_label: str,
    warnings: list[str],
) -> pd.DataFrame | None:
    """The evaluation's general-similarity check (None when no pairs file is configured); a
    file that cannot be read adds a warning to `warnings` instead of failing the evaluation."""
    if not config.similarity_csv:
        return None
    try:
        return compare_similarity(
            models,
            load_similarity_pairs(config.similarity_csv),
            base_label=base_label,
            n_resamples=min(config.n_resamples, 1000),
            seed=config.seed,
            batch_size=config.batch_size,
            confidence=config.confidence,
        )
    except InputError as exc:
        warnings.append(f"General-similarity check skipped: {exc}")
        return None
