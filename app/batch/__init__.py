"""Batch inference: files of raw rows scored by a registered model on Ray Data (`mlsys predict`)."""
