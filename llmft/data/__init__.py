"""Data: sources (hub ids, local files in their formats), carved splits, bounded tokenization, loaders, packing."""
