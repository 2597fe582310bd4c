"""ragtune: make a RAG retriever measurably better on your own documents."""

import os

# The bundled model and every test run offline; never let a library reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"
