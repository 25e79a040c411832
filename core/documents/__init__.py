"""Documents: files in, chunks out. Parsing (PDF, HTML, text), chunking and the chunk id
(a content hash, in corpus.py), the corpus contract every stage reads, the Chroma vector store, and
the stage that builds, grows and indexes a corpus run."""
