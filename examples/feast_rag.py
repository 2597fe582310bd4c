"""The seed's FeastRAGRetriever flow, done with ragtune: a Feast repo, a retriever, a pluggable generator.

The seed built a `feast.rag_retriever.FeastRAGRetriever` (question encoder, generator model, feature
view, `generate_answer(query)`). Here the same steps are: `ragtune feast init` + `ragtune index` make
the repo, `Retriever` encodes the question with the model the view was indexed with and searches the
online store, and `RAG` hands question and passages to any callable. No LLM ships with ragtune, so the
generator below answers extractively (the retrieved sentence sharing most words with the question);
`llm_generator` shows where a real model goes.

    python examples/feast_rag.py                      # builds runs/feast-example on first use
    python examples/feast_rag.py --model runs/demo/run/model "Does vitamin D prevent fractures?"
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ragtune.config import ModelConfig
from ragtune.errors import UserError
from ragtune.io.data import load_dataset
from ragtune.prepare.run import input_timestamp
from ragtune.serving.index import index
from ragtune.serving.rag import RAG
from ragtune.serving.repo import current_view, init_repo, open_store
from ragtune.serving.retriever import Hit, Retriever

QUESTIONS = [
    "Does folic acid lower homocysteine levels?",
    "Is obesity a risk factor for type 2 diabetes?",
]


def prompt(question: str, passages: list[Hit]) -> str:
    """The seed's prompt: the retrieved texts as context, then the question."""
    context = "\n\n".join(hit.text for hit in passages)
    return f"Context: {context}\n\nQuestion: {question}\n\nAnswer:"


def extractive_generator(question: str, passages: list[Hit]) -> str:
    """Stand-in for an LLM: the retrieved sentence with the most words in common with the question."""
    words = set(re.findall(r"\w+", question.lower()))
    sentences = [s for hit in passages for s in re.split(r"(?<=[.!?])\s+", hit.text) if s]
    return max(sentences, key=lambda s: len(words & set(re.findall(r"\w+", s.lower()))), default="")


def llm_generator(model_name: str):
    """A real generator, for when you have a local causal LM (e.g. a transformers model directory)."""
    from transformers import pipeline

    generate = pipeline("text-generation", model=model_name)

    def answer(question: str, passages: list[Hit]) -> str:
        return generate(prompt(question, passages), max_new_tokens=100, return_full_text=False)[0]["generated_text"]

    return answer


def ensure_index(repo: Path, data: str, model: str) -> None:
    """Init and index on first use; later runs search what is there."""
    if not (repo / "feature_store.yaml").exists():
        init_repo(repo, 384, "data/online_store.db")
    try:
        current_view(open_store(repo), repo)
    except UserError:
        corpus = load_dataset(data).corpus
        result = index(repo, corpus, ModelConfig(name=model), input_timestamp(Path(data)))
        print(f"indexed {result.passages} passages into {repo}:{result.view}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="*", default=QUESTIONS)
    parser.add_argument("--repo", type=Path, default=Path("runs/feast-example"))
    parser.add_argument("--data", default="data/scifact-passages.jsonl.gz", help="corpus to index on first use")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="model to index with on first use")
    parser.add_argument("--llm", help="local text-generation model instead of the extractive stand-in")
    args = parser.parse_args()

    ensure_index(args.repo, args.data, args.model)
    generator = llm_generator(args.llm) if args.llm else extractive_generator
    rag = RAG(Retriever(args.repo), generator, top_k=3)
    for question in args.questions:
        answer = rag(question)
        print(f"\nQ: {question}\nA: {answer.answer}")
        for hit in answer.passages:
            print(f"   {hit.score:.3f}  {hit.id}  {hit.title[:80]}")


if __name__ == "__main__":
    main()
