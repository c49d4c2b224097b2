"""LoRA training on self-reasoning trajectories, with gradual learning (the `train` extra).

Each step of a trajectory is one sample: the prompt the pipeline sends (rendered and tokenised
by llama.cpp's own chat template and tokenizer) followed by the target reply and the template's
end of turn; the loss is on the reply tokens only. Gradual learning as in Xia et al. 2024: stage
1 trains on relevance steps, stage 2 on relevance and evidence, stage 3 on all three steps.
The LoRA (peft) covers the attention and MLP projections, one alpha for all modules, no bias,
DoRA or rsLoRA: what llama.cpp's GGUF LoRA and vLLM can both serve. Checkpoints after every
few optimizer steps make a run resumable.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.base_model import Base

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
STAGES: dict[int, tuple[str, ...]] = {
    1: ("relevance",),
    2: ("relevance", "evidence"),
    3: ("relevance", "evidence", "analysis"),
}
MAX_RANK = 16  # vLLM's default --max-lora-rank


@dataclass
class TrainOptions:
    rank: int = 8
    alpha: int = 16
    lr: float = 3e-4
    # Samples (steps of trajectories) each stage trains on, drawn seeded from its pool.
    samples_per_stage: int = 60
    accumulate: int = 4  # samples per optimizer step
    max_tokens: int = 1536  # longer samples are skipped (and counted)
    layers: list[int] | None = None  # only these decoder layers (None: all)
    seed: int = 0
    checkpoint_every: int = 5  # optimizer steps
    device: str = "auto"

    def validate(self) -> None:
        if not 1 <= self.rank <= MAX_RANK:
            raise ValueError(f"rank must be 1..{MAX_RANK} (vLLM's default maximum)")
        if self.samples_per_stage < 1 or self.accumulate < 1:
            raise ValueError("samples per stage and accumulation must be at least 1")


@dataclass(frozen=True)
class Sample:
    step: str
    ids: tuple[int, ...]
    target_from: int  # index of the first target token


@dataclass
class Encoded:
    by_step: dict[str, list[Sample]] = field(default_factory=dict)
    skipped: int = 0


def encode(trajectories: Sequence[dict[str, Any]], chat: Any, max_tokens: int) -> Encoded:
    """Token ids of every step: llama.cpp's rendering of the pipeline's messages, then the
    target reply with the end of turn."""
    encoded = Encoded()
    for t in trajectories:
        for step in t["steps"]:
            prompt, reply = chat.sample_tokens(step["messages"], step["target"])
            if len(prompt) + len(reply) > max_tokens:
                encoded.skipped += 1
                continue
            sample = Sample(step["step"], tuple(prompt + reply), len(prompt))
            encoded.by_step.setdefault(step["step"], []).append(sample)
    return encoded


def plan(encoded: Encoded, options: TrainOptions) -> list[tuple[int, list[Sample]]]:
    """The samples of each stage, in order: seeded draws from the stage's steps, cycling
    through the pool when it is smaller than the stage."""
    rng = random.Random(options.seed)  # noqa: S311 - seeded shuffling, not security
    stages = []
    for stage, steps in STAGES.items():
        pool = [s for name in steps for s in encoded.by_step.get(name, [])]
        if not pool:
            continue
        drawn: list[Sample] = []
        while len(drawn) < options.samples_per_stage:
            cycle = pool[:]
            rng.shuffle(cycle)
            drawn += cycle
        stages.append((stage, drawn[: options.samples_per_stage]))
    return stages


def _device(wanted: str) -> str:
    import torch

    if wanted != "auto":
        return wanted
    return "cuda" if torch.cuda.is_available() else "cpu"


def lora_model(base: Base, options: TrainOptions) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        target_modules=list(TARGET_MODULES),
        lora_dropout=0.0,
        bias="none",
        use_dora=False,
        use_rslora=False,
        task_type="CAUSAL_LM",
        layers_to_transform=options.layers,
        layers_pattern="layers" if options.layers is not None else None,
    )
    return get_peft_model(base.model, config)


Progress = Callable[[int, int, int, float, float], None]  # stage, done, total, loss, seconds


def train(
    base: Base,
    trajectories: Sequence[dict[str, Any]],
    options: TrainOptions,
    checkpoints: Path,
    *,
    resume: bool = False,
    progress: Progress | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train a LoRA on `trajectories`; returns the peft model and the training summary."""
    import torch
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    options.validate()
    torch.manual_seed(options.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    device = _device(options.device)
    encoded = encode(trajectories, base.chat, options.max_tokens)
    stages = plan(encoded, options)
    if not stages:
        raise ValueError(
            f"no sample fits in {options.max_tokens} tokens ({encoded.skipped} skipped)"
        )
    model = lora_model(base, options).to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=0.0)
    state_file = checkpoints / "state.pt"
    position = (0, 0)  # (stage index, sample index) to start from
    history: list[dict[str, Any]] = []
    elapsed = 0.0
    optimizer_steps = 0
    if resume and state_file.is_file():
        state = torch.load(state_file, map_location=device, weights_only=False)
        set_peft_model_state_dict(model, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        position, history = tuple(state["position"]), state["history"]
        elapsed, optimizer_steps = state["seconds"], state["optimizer_steps"]

    def save(stage_index: int, sample_index: int) -> None:
        checkpoints.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "lora": get_peft_model_state_dict(model),
                "optimizer": optimizer.state_dict(),
                "position": [stage_index, sample_index],
                "history": history,
                "seconds": elapsed,
                "optimizer_steps": optimizer_steps,
            },
            state_file.with_suffix(".tmp"),
        )
        os.replace(state_file.with_suffix(".tmp"), state_file)

    total = sum(len(samples) for _, samples in stages)
    done = sum(len(samples) for _, samples in stages[: position[0]]) + position[1]
    tokens = 0
    for stage_index, (stage, samples) in enumerate(stages):
        if stage_index < position[0]:
            continue
        start = position[1] if stage_index == position[0] else 0
        if start == 0:
            history.append(
                {
                    "stage": stage,
                    "steps": list(STAGES[stage]),
                    "samples": 0,
                    "optimizer_steps": 0,
                    "seconds": 0.0,
                    "final_loss": None,
                }
            )
        record = history[-1]
        losses: list[float] = []
        optimizer.zero_grad()
        for index in range(start, len(samples)):
            began = time.perf_counter()
            sample = samples[index]
            ids = torch.tensor([sample.ids], device=device)
            labels = ids.clone()
            labels[0, : sample.target_from] = -100
            loss = model(input_ids=ids, labels=labels).loss
            (loss / options.accumulate).backward()
            losses.append(float(loss.detach()))
            tokens += len(sample.ids)
            last = index + 1 == len(samples)
            if (index + 1) % options.accumulate == 0 or last:
                optimizer.step()
                optimizer.zero_grad()
                optimizer_steps += 1
                record["optimizer_steps"] += 1
            seconds = time.perf_counter() - began
            elapsed += seconds
            record["samples"] += 1
            record["seconds"] = round(record["seconds"] + seconds, 2)
            record["final_loss"] = round(sum(losses[-8:]) / len(losses[-8:]), 4)
            done += 1
            if progress:
                progress(stage, done, total, record["final_loss"], elapsed)
            if last or (
                (index + 1) % options.accumulate == 0
                and optimizer_steps % options.checkpoint_every == 0
            ):
                save(stage_index + (1 if last else 0), 0 if last else index + 1)
    model.eval()
    samples_n = sum(r["samples"] for r in history)
    summary = {
        "stages": history,
        "optimizer_steps": optimizer_steps,
        "samples": samples_n,
        "skipped_over_max_tokens": encoded.skipped,
        "pool": {name: len(s) for name, s in encoded.by_step.items()},
        "seconds": round(elapsed, 1),
        "seconds_per_sample": round(elapsed / samples_n, 2) if samples_n else None,
        "tokens_this_run": tokens,
        "device": device,
        "lr": options.lr,
        "accumulate": options.accumulate,
        "max_tokens": options.max_tokens,
        "seed": options.seed,
    }
    return model, summary
