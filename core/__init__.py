"""ragbench core: headless stages of the embedding fine-tuning loop.

Light modules here never import streamlit, torch, sentence_transformers or ragas
at import time; heavy imports live inside the functions that need them.
"""

__version__ = "0.1.0"
