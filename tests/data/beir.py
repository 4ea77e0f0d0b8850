"""A tiny BEIR dataset whose retrieval metrics can be computed by hand (the evaluation
harness's tests and the web UI's evaluation page use it)."""

from __future__ import annotations

import json
import math
from pathlib import Path

CORPUS = {
    "d1": (
        "Photosynthesis",
        "Plants turn sunlight into chemical energy in their leaves, "
        "using chlorophyll to convert light, water and carbon dioxide into sugar.",
    ),
    "d2": (
        "Volcanoes",
        "A volcano erupts when magma from the mantle rises through the crust "
        "and escapes as lava, ash and gas.",
    ),
    "d3": (
        "Vaccines",
        "Vaccines train the immune system: they show it a harmless piece of a "
        "pathogen so that it learns to produce antibodies before a real infection.",
    ),
    "d4": (
        "Black holes",
        "A black hole is a region where gravity is so strong that nothing, "
        "not even light, escapes past the event horizon.",
    ),
    "d5": (
        "Honey bees",
        "Honey bees pollinate flowering plants and store nectar as honey in "
        "the wax cells of their hive.",
    ),
    "d6": (
        "Tides",
        "Ocean tides are caused by the gravitational pull of the Moon and the Sun "
        "on the Earth's oceans, raising and lowering the sea twice a day.",
    ),
}
QUERIES = {
    "q1": "How do plants turn sunlight into energy?",
    "q2": "What causes ocean tides?",
    "q3": "How do vaccines train the immune system?",
    "q4": "A query without judgements is not evaluated",
}
# q3 has a second relevant document that is not in the corpus: it can never be found.
QRELS = [("q1", "d1", 1), ("q2", "d6", 1), ("q3", "d3", 1), ("q3", "d-missing", 1)]
# Each query finds its document first, so by hand:
#   nDCG@10 = (1 + 1 + 1 / (1 + 1/log2(3))) / 3, Recall@10 = Recall@100 = (1 + 1 + 0.5) / 3,
#   MRR@10 = 1.
NDCG = (2 + 1 / (1 + 1 / math.log2(3))) / 3
RECALL = 2.5 / 3


def write_beir(folder: Path, corpus: dict[str, tuple[str, str]]) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for doc_id, (title, text) in corpus.items():
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as f:
        for qid, text in QUERIES.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    rows = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{s}" for q, d, s in QRELS)]
    (folder / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    return folder
