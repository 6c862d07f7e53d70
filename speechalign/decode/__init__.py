"""Decoders and per-dialect CER scoring."""
