"""Corpora, tokenizers and memory-mapped token shards. Knows nothing of Ray or models."""
