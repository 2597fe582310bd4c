"""Serving: the Feast repo, the vector index, search, the Retriever and the RAG loop."""
