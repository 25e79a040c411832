"""The corpora of bench.scale: real manuals from Debian, topped up with generated text.

Real PDFs first: the R manuals (`r-doc-pdf`, 3,092 pages), then Octave's and gnuplot's manuals
(`octave-doc`, `gnuplot-doc`) and, for the larger size, LilyPond's and Why3's (`lilypond-doc-pdf`,
`why3-doc-pdf`). Each package is fetched once with `apt-get download` and unpacked with
`dpkg-deb -x` under bench/out/scale/debs (ignored by git).

Where the real pages run out, generated Markdown documents make up the rest: sections with a
heading and paragraphs of words drawn with the real corpus's own word frequencies (a Zipf-like
law, seeded), so BM25's posting lists and the chunker see text shaped like the real one. Every
generated run of words is new, so no generated chunk repeats a real one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "out" / "scale"
DEB_DIR = OUT / "debs"
R_MANUALS_UNPACKED = Path("/work/debdocs/r/usr/share/R/doc/manual")  # if already unpacked here
R_MANUALS = (
    "R-FAQ.pdf",
    "R-admin.pdf",
    "R-data.pdf",
    "R-exts.pdf",
    "R-intro.pdf",
    "R-ints.pdf",
    "R-lang.pdf",
    "refman.pdf",
)
# package -> the PDFs it holds (paths inside the package)
PACKAGES: dict[str, tuple[str, ...]] = {
    "r-doc-pdf": tuple(f"usr/share/R/doc/manual/{m}" for m in R_MANUALS),
    "octave-doc": ("usr/share/doc/octave/octave.pdf",),
    "gnuplot-doc": ("usr/share/doc/gnuplot/gnuplot.pdf",),
    "lilypond-doc-pdf": tuple(
        f"usr/share/doc/lilypond/html/Documentation/{m}.pdf"
        for m in ("notation", "internals", "snippets", "learning", "usage", "contributor")
    ),
    "why3-doc-pdf": ("usr/share/doc/why3-doc-pdf/manual.pdf",),
}
SIZES: dict[str, tuple[str, ...]] = {  # the packages each size starts from
    "10k": ("r-doc-pdf", "octave-doc"),  # 7,338 + 2,838 chunks
    "100k": (
        "r-doc-pdf",
        "octave-doc",
        "gnuplot-doc",
        "lilypond-doc-pdf",
        "why3-doc-pdf",
    ),  # 17,507
}
TARGETS = {"10k": 10_000, "100k": 100_000}
NEW_CHARS_PER_CHUNK = (
    1230  # generated characters per chunk (measured: 82,573 asked gave 105,748 at 960)
)
CHUNKS_PER_GENERATED_DOC = 200


def package_pdfs(package: str) -> list[Path]:
    """The PDFs of one Debian package, downloaded and unpacked once."""
    if package == "r-doc-pdf" and all((R_MANUALS_UNPACKED / m).exists() for m in R_MANUALS):
        return [R_MANUALS_UNPACKED / m for m in R_MANUALS]
    root = DEB_DIR / package / "root"
    wanted = [root / p for p in PACKAGES[package]]
    if not all(p.exists() for p in wanted):
        folder = DEB_DIR / package
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        subprocess.run(["apt-get", "download", package], cwd=folder, check=True)
        deb = next(folder.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return wanted


def real_files(size: str) -> list[Path]:
    """The real PDFs a size starts from, in a fixed order."""
    return [pdf for package in SIZES[size] for pdf in package_pdfs(package)]


_WORD = re.compile(r"[A-Za-z][A-Za-z_]+")


@dataclass(frozen=True)
class WordLaw:
    """Words of the real corpus and how often each occurs (the generator draws from it)."""

    words: list[str]
    p: np.ndarray  # (V,) probabilities

    @classmethod
    def of(cls, texts: list[str], vocabulary: int = 30_000) -> WordLaw:
        counts = Counter(w for t in texts for w in _WORD.findall(t))
        common = counts.most_common(vocabulary)
        freq = np.array([c for _, c in common], dtype=np.float64)
        return cls([w for w, _ in common], freq / freq.sum())


def generated_documents(n_chunks: int, law: WordLaw, seed: int = 0) -> list[tuple[str, bytes]]:
    """Markdown documents holding about `n_chunks` chunks of generated text: (name, bytes)."""
    rng = np.random.default_rng(seed)
    docs: list[tuple[str, bytes]] = []
    remaining = n_chunks
    number = 0
    while remaining > 0:
        chunks = min(CHUNKS_PER_GENERATED_DOC, remaining)
        remaining -= chunks
        number += 1
        docs.append((f"generated-{number:04d}.md", _document(chunks, law, rng, number).encode()))
    return docs


def _document(n_chunks: int, law: WordLaw, rng: np.random.Generator, number: int) -> str:
    words = np.asarray(law.words, dtype=object)
    # every word of the document drawn at once: (about n_chunks * 150,) indices
    drawn = iter(words[rng.choice(len(words), size=n_chunks * 170 + 1000, p=law.p)].tolist())
    parts = [f"# Generated manual {number}\n"]
    chars, section = 0, 0
    while chars < n_chunks * NEW_CHARS_PER_CHUNK:
        section += 1
        title = " ".join(next(drawn) for _ in range(3))
        parts.append(f"\n## {section}. {title.capitalize()} {number}-{section}\n")
        for _ in range(int(rng.integers(2, 6))):
            sentences = []
            for _ in range(int(rng.integers(3, 7))):
                size = int(rng.integers(8, 22))
                sentences.append(
                    " ".join(next(drawn, "the") for _ in range(size)).capitalize() + "."
                )
            paragraph = " ".join(sentences)
            parts.append("\n" + paragraph + "\n")
            chars += len(paragraph)
    return "".join(parts)
