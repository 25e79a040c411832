"""Small, seeded fine-tuning fixtures: a synthetic parts catalogue and a tiny random BERT.

The catalogue is built so that the offline MiniLM is weak on it and fine-tuning can fix that in
seconds: every chunk describes a made-up part with a made-up code ("QX-7731") and the same generic
wording as its neighbours, so only the code tells chunks apart. Questions name the code. Training
teaches the model to weigh those rare code tokens, which carries over to the held-out chunks.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from core.documents.corpus import Chunk, chunk_id_for, save_chunks
from core.questions.dataset import QAItem, save_qa
from core.runs.folders import Run, create_run

_SYLLABLES = [
    "vel",
    "tra",
    "quor",
    "bis",
    "zan",
    "kel",
    "brin",
    "mox",
    "dra",
    "fen",
    "lu",
    "tor",
    "pex",
]
_FUNCTIONS = [
    "regulates the coolant pressure in the secondary loop",
    "controls the flow of lubricant to the main bearing",
    "monitors the temperature of the hydraulic reservoir",
    "filters particles from the intake air of the compressor",
    "balances the load between the two drive shafts",
]
_FILLER = "the unit is checked cleaned and logged after every shift by the team on duty".split()
_SUPPLIERS = ["Northwind Industrial", "Acme Components", "Orbital Fittings", "Delta Machining"]


def _code(rng: random.Random) -> str:
    letters = "".join(rng.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(2))
    return f"{letters}-{rng.randint(1000, 9999)}"


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(3)).capitalize()


def catalogue(
    n_chunks: int = 40, seed: int = 7, filler_words: int = 0
) -> tuple[list[Chunk], list[QAItem]]:
    """Chunks and accepted questions (3 per chunk), split by chunk 70/15/15. `filler_words`
    lengthens every chunk with generic maintenance prose (for memory tests)."""
    rng = random.Random(seed)
    codes: set[str] = set()
    chunks: list[Chunk] = []
    items: list[QAItem] = []
    order = list(range(n_chunks))
    rng.shuffle(order)
    n_train = round(n_chunks * 0.7)
    n_val = round(n_chunks * 0.15)
    split_of = {
        idx: "train" if pos < n_train else "validation" if pos < n_train + n_val else "test"
        for pos, idx in enumerate(order)
    }
    for i in range(n_chunks):
        code = _code(rng)
        while code in codes:
            code = _code(rng)
        codes.add(code)
        name = _name(rng)
        months = rng.randint(2, 24)
        supplier = rng.choice(_SUPPLIERS)
        text = (
            f"Part {code}, known in the workshop as the {name} unit, {rng.choice(_FUNCTIONS)}. "
            f"It must be inspected every {months} months by a certified technician. "
            f"Replacement parts are delivered by {supplier}."
        )
        if filler_words:
            text += " " + " ".join(rng.choice(_FILLER) for _ in range(filler_words))
        chunk = Chunk(
            id=chunk_id_for(text), text=text, source="catalogue.txt", page=i // 4 + 1, chunk_index=i
        )
        chunks.append(chunk)
        questions = [
            f"How often does part {code} need an inspection?",
            f"What is the workshop name of {code}?",
            f"Who delivers replacement parts for {code}?",
        ]
        for j, question in enumerate(questions):
            items.append(
                QAItem(
                    id=f"q{i:03d}_{j}",
                    question=question,
                    chunk_id=chunk.id,
                    split=split_of[i],
                    origin="manual",
                )
            )
    return chunks, items


def make_qa_run(
    n_chunks: int = 40, seed: int = 7, drop_splits: tuple[str, ...] = (), filler_words: int = 0
) -> tuple[Run, Run]:
    """A corpus run and a qa run (parent: the corpus) holding the catalogue."""
    chunks, items = catalogue(n_chunks, seed, filler_words)
    corpus = create_run("corpus", name="catalogue")
    save_chunks(corpus, chunks)
    corpus.set_status("done", chunks=len(chunks))
    qa = create_run("qa", name="catalogue questions", parents={"corpus": corpus.id})
    save_qa(qa, [i for i in items if i.split not in drop_splits])
    qa.set_status("done")
    return corpus, qa


def make_tiny_model(folder: Path, hidden: int = 32, layers: int = 2) -> Path:
    """A random-weight BERT (tokenizer copied from the packaged MiniLM) saved as a plain
    transformer folder: core.embeddings.load_model adds mean pooling. Trains in a blink on CPU."""
    from transformers import BertConfig, BertModel

    from core.embeddings import default_model_path

    src = default_model_path()
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copy(src / name, folder / name)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def make_tiny_st_model(folder: Path, prompts: dict[str, str]) -> Path:
    """The tiny BERT as a sentence-transformers folder (mean pooling) carrying `prompts`."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    raw = make_tiny_model(folder.with_name(folder.name + "-raw"))
    transformer = Transformer(str(raw))
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling], prompts=prompts, device="cpu")
    model.save(str(folder))
    return folder
