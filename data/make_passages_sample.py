"""Build data/scifact-passages.jsonl.gz: SciFact abstracts chunked into passages, in the seed's style.

Each abstract becomes passages of about three sentences that share the paper's title and carry
its id as source_id, like chunked wiki passages. Run from the repository root.
"""

import gzip
import json
import random
import re

SENTENCES_PER_PASSAGE = 3
PAPERS = 400

with gzip.open("data/scifact/corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
    papers = [json.loads(line) for line in handle]
random.Random(0).shuffle(papers)
with gzip.GzipFile("data/scifact-passages.jsonl.gz", "wb", mtime=0) as raw:
    for paper in sorted(papers[:PAPERS], key=lambda p: int(p["_id"])):
        sentences = re.split(r"(?<=[.!?])\s+", paper["text"].strip())
        for start in range(0, len(sentences), SENTENCES_PER_PASSAGE):
            chunk = " ".join(sentences[start : start + SENTENCES_PER_PASSAGE])
            row = {
                "id": f"{paper['_id']}-{start // SENTENCES_PER_PASSAGE}",
                "title": paper["title"],
                "text": chunk,
                "source_id": paper["_id"],
            }
            raw.write((json.dumps(row) + "\n").encode("utf-8"))
