"""Embeddings, FAISS search, SeqSim and the YuBao protocol."""

# Here rather than in retrieval.search, so that the CLI can list them without importing torch and faiss.
INDEXES = ("flat", "ivf", "hnsw")
