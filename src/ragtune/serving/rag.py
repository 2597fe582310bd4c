"""The RAG loop over a Retriever: retrieve, then hand question and passages to any generator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ragtune.serving.retriever import Hit, Retriever


@dataclass
class Answer:
    question: str
    answer: str
    passages: list[Hit]


Generator = Callable[[str, list[Hit]], str]  # (question, retrieved passages) -> answer text


class RAG:
    """Retrieve, then hand the question and passages to any generator (an LLM call, a template …)."""

    def __init__(self, retriever: Retriever, generator: Generator, top_k: int = 5):
        self.retriever, self.generator, self.top_k = retriever, generator, top_k

    def __call__(self, question: str) -> Answer:
        passages = self.retriever.search(question, self.top_k)
        return Answer(question, self.generator(question, passages), passages)
