"""Encoding and ranking: models, embeddings (torch or onnx), exact top-k and the retrieval metrics."""
