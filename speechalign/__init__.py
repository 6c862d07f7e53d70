"""speechalign: Chinese dialect speech corpora, ASR with per-dialect CER, and cross-dialect speech retrieval."""

__version__ = "0.2.0"
