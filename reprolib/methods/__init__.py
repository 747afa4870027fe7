"""Compression methods: one module per paper (pruning, decomposition, NAS, templates)."""
