"""The questions `rag bench --split train` samples to choose settings and measure them, which
nothing learned may train on: trajectories (training/trajectories.py) and the answer critic's
pairs (training/critic_data.py) leave them out, so a trained component is measured on
questions it has not seen."""

from __future__ import annotations

from pathlib import Path

from benchmark.datasets import load_benchmark

# `rag bench --split train` samples its dev questions with this seed.
DEV_SEED = 13
# The small samples: their questions and gold documents are left out.
DEV_SAMPLE_SIZES = (5, 10, 20, 30, 40, 50)
# The larger samples a decision run draws (scripts/bench_critic.py, `rag bench --questions`):
# their questions are left out.
DECISION_SAMPLE_SIZES = (60, 100, 200, 250, 300)


def dev_exclusions(dataset: str, data_dir: Path) -> tuple[set[str], set[str]]:
    """Question ids and gold documents of the small dev samples `rag bench --split train`
    draws."""
    ids: set[str] = set()
    docs: set[str] = set()
    for n in DEV_SAMPLE_SIZES:
        bench = load_benchmark(
            dataset, split="train", questions=n, seed=DEV_SEED, data_dir=data_dir
        )
        for q in bench.questions:
            ids.add(q.id)
            docs.update(q.gold_docs)
    return ids, docs


def decision_exclusions(dataset: str, data_dir: Path) -> tuple[set[str], set[str]]:
    """`dev_exclusions`, with the question ids of the decision samples added."""
    ids, docs = dev_exclusions(dataset, data_dir)
    for n in DECISION_SAMPLE_SIZES:
        bench = load_benchmark(
            dataset, split="train", questions=n, seed=DEV_SEED, data_dir=data_dir
        )
        ids.update(q.id for q in bench.questions)
    return ids, docs
