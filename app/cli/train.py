"""`rag train`: self-reasoning trajectories from public QA data, and LoRA adapters trained on
them (training/ holds the code; the trainer needs the `train` extra)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli import http

train = typer.Typer(help="Build self-reasoning trajectories and train LoRA adapters.")


def _teacher(spec: str, loop: asyncio.AbstractEventLoop) -> tuple[Any, Any]:
    """A catalog model / GGUF (run by llama.cpp here) or an OpenAI-compatible server URL."""
    from core.settings import get_settings
    from generation.llm.factory import make_generator
    from training.trajectories import generator_teacher

    generation = get_settings().generation
    if spec.startswith(("http://", "https://")):
        openai = generation.openai.model_copy(update={"base_url": spec.rstrip("/")})
        generation = generation.model_copy(update={"backend": "openai", "openai": openai})
    else:
        llamacpp = generation.llamacpp.model_copy(update={"model": spec})
        generation = generation.model_copy(update={"backend": "llamacpp", "llamacpp": llamacpp})
    generator = make_generator(generation)
    return generator, generator_teacher(generator, loop.run_until_complete)


@train.command()
def trajectories(
    dataset: Annotated[str, typer.Option(help="squad, squad2, hotpotqa or scifact.")],
    out: Annotated[Path, typer.Option(help="Folder for manifest.json and trajectories.jsonl.")],
    split: Annotated[str, typer.Option(help="Only train: benchmark files are for reports.")] = (
        "train"
    ),
    teacher: Annotated[
        str | None,
        typer.Option(
            help="Reasons and analyses from this model (catalog name or GGUF, run here) or "
            "OpenAI-compatible server URL, kept where its choices agree with gold."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="Questions to turn into trajectories.")] = 200,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 7,
    max_documents: Annotated[
        int, typer.Option(help="Collection size: the gold documents plus distractors.")
    ] = 300,
    data_dir: Annotated[Path, typer.Option(help="Folder of the public datasets.")] = Path(
        "../shared/datasets"
    ),
) -> None:
    """Retrieve each training question with the service's own retrieval, render every step
    with the pipeline's prompts, and write gold-labelled targets (see training/trajectories.py).
    Questions of the dev samples `rag bench --split train` draws are left out."""
    from rich.progress import Progress

    from benchmark.runner import BenchError, BenchRunner, _body
    from core.settings import get_settings
    from generation.reasoning.prompts import make_passages
    from training.trajectories import (
        build_trajectory,
        hits_from_json,
        training_set,
        write,
    )

    if split != "train":
        typer.echo("trajectories come from the train split only", err=True)
        raise typer.Exit(2)
    try:
        bench, dropped = training_set(dataset, data_dir, limit, seed, max_documents)
    except (ValueError, OSError) as exc:
        typer.echo(f"cannot load {dataset}: {exc}", err=True)
        raise typer.Exit(2) from exc
    settings = get_settings()
    pipeline = settings.generation.pipeline
    loop = asyncio.new_event_loop()
    generator, ask = _teacher(teacher, loop) if teacher else (None, None)
    collection = f"traj-{dataset}-{uuid.uuid4().hex[:8]}"
    typer.echo(
        f"{dataset}: {len(bench.questions)} questions ({dropped} left out as dev questions), "
        f"{len(bench.documents)} documents",
        err=True,
    )
    built, retrieval = [], {}
    try:
        with http.connect(None, "") as client, Progress() as bar:
            runner = BenchRunner(client, collection, top_k=pipeline.top_k)
            task = bar.add_task("ingest", total=None)
            runner.ingest(bench)
            bar.update(task, total=1, completed=1)
            task = bar.add_task("trajectories", total=len(bench.questions))
            for q in bench.questions:
                search = {"collection": collection, "query": q.question, "top_k": pipeline.top_k}
                found = _body(client.post("/v1/search", json=search))
                retrieval = {
                    "mode": found["retrieval"],
                    "top_k": pipeline.top_k,
                    "embedder": found["embedder"],
                    "chunking": {
                        "chunk_size": settings.ingest.chunk_size,
                        "chunk_overlap": settings.ingest.chunk_overlap,
                    },
                }
                passages = make_passages(hits_from_json(found["hits"]))
                if passages:
                    built.append(build_trajectory(q, passages, pipeline, ask))
                bar.advance(task)
    except BenchError as exc:
        typer.echo(f"cannot build trajectories: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        if generator is not None:
            loop.run_until_complete(generator.aclose())
        loop.close()
    manifest = write(
        out,
        built,
        {
            "dataset": dataset,
            "split": split,
            "teacher": teacher,
            "retrieval": retrieval,
            "pipeline": {
                "reason_max_chars": pipeline.reason_max_chars,
                "max_evidence": pipeline.max_evidence,
                "evidence_candidates": pipeline.evidence_candidates,
                "analysis_max_chars": pipeline.analysis_max_chars,
                "answer_max_chars": pipeline.answer_max_chars,
            },
            "prompt_version": pipeline.prompt_set,
            "seed": seed,
        },
    )
    counts = manifest["counts"]
    typer.echo(
        f"wrote {counts['examples']} trajectories to {out} ({counts['answerable']} answerable, "
        f"{counts['unanswerable']} nothing-relevant; teacher {counts['source']['teacher']})"
    )


@train.command()
def adapter(
    base: Annotated[str, typer.Option(help="Catalog model (or GGUF path) the adapter is for.")],
    trajectories: Annotated[
        list[Path], typer.Option(help="Trajectory folders (repeat the option for several).")
    ],
    out: Annotated[Path, typer.Option(help="Adapter folder, e.g. adapters/NAME.")],
    rank: Annotated[int, typer.Option(help="LoRA rank (at most 16).")] = 8,
    alpha: Annotated[int, typer.Option(help="LoRA alpha (one for every module).")] = 16,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 3e-4,
    samples_per_stage: Annotated[
        int, typer.Option(help="Samples each of the three stages trains on.")
    ] = 60,
    accumulate: Annotated[int, typer.Option(help="Samples per optimizer step.")] = 4,
    max_tokens: Annotated[int, typer.Option(help="Skip samples longer than this.")] = 1536,
    layers: Annotated[
        str | None, typer.Option(help="Only these decoder layers, e.g. 0,1 (default: all).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampling and initialisation seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoints.")] = False,
    export_base: Annotated[
        Path | None,
        typer.Option(help="Also write the dequantised base as a transformers folder (vLLM)."),
    ] = None,
    models_dir: Annotated[Path, typer.Option(help="Where catalog models are installed.")] = Path(
        "models"
    ),
) -> None:
    """Train a LoRA adapter on self-reasoning trajectories (gradual learning: relevance, then
    relevance and evidence, then whole trajectories) and export it for llama.cpp (GGUF) and
    vLLM (PEFT). Needs the train extra: pip install -e .[train]."""
    try:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        from generation.model_files.install import file_sha256
        from training import export
        from training.base_model import load_base
        from training.lora import TARGET_MODULES, TrainOptions
        from training.lora import train as train_lora
        from training.trajectories import read
    except ImportError as exc:
        typer.echo(f"training needs the train extra (pip install -e .[train]): {exc}", err=True)
        raise typer.Exit(2) from exc
    options = TrainOptions(
        rank=rank,
        alpha=alpha,
        lr=lr,
        samples_per_stage=samples_per_stage,
        accumulate=accumulate,
        max_tokens=max_tokens,
        layers=[int(x) for x in layers.split(",")] if layers else None,
        seed=seed,
        device=device,
    )
    try:
        options.validate()
        loaded = [read(folder) for folder in trajectories]
    except (ValueError, OSError) as exc:
        typer.echo(f"cannot train: {exc}", err=True)
        raise typer.Exit(2) from exc
    examples = [t for _, items in loaded for t in items]
    typer.echo(f"loading {base} for training", err=True)
    try:
        trainable = load_base(base, models_dir)
    except Exception as exc:  # the base cannot be resolved or dequantised
        typer.echo(f"cannot load {base}: {exc}", err=True)
        raise typer.Exit(2) from exc
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} samples"),
        TimeRemainingColumn(),
    )
    logged = not sys.stderr.isatty()  # no live bar in a log file: a line every 10 samples
    with Progress(*columns, disable=logged) as bar:
        task = bar.add_task("training", total=None)

        def progress(stage: int, done: int, total: int, loss: float, seconds: float) -> None:
            bar.update(
                task, completed=done, total=total, description=f"stage {stage} loss {loss:.3f}"
            )
            if logged and (done % 10 == 0 or done == total):
                left = seconds / done * (total - done) if done else 0.0
                typer.echo(
                    f"stage {stage}: {done}/{total} samples, loss {loss:.3f}, "
                    f"{seconds:.0f} s, about {left / 60:.0f} min left",
                    err=True,
                )

        try:
            model, summary = train_lora(
                trainable, examples, options, out / "checkpoints", resume=resume, progress=progress
            )
        except ValueError as exc:
            typer.echo(f"cannot train: {exc}", err=True)
            raise typer.Exit(2) from exc
    typer.echo("exporting the PEFT folder and the GGUF LoRA", err=True)
    try:
        export.export_peft(model, out / "peft", trainable.catalog_name)
        export.export_gguf(out / "peft", trainable.model.config, out / "adapter.gguf")
        if export_base is not None:
            export.export_base(trainable, export_base)
    except export.ExportError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    manifest = export.write_manifest(
        out,
        {
            "name": out.name,
            # The catalog name (usable as RAG_GENERATION__LLAMACPP__MODEL) when it is one.
            "base_model": trainable.catalog_name,
            "base_sha256": file_sha256(trainable.resolved.path),
            "gguf": "adapter.gguf",
            "peft": "peft",
            "lora": {
                "rank": rank,
                "alpha": alpha,
                "target_modules": list(TARGET_MODULES),
                "layers": options.layers,
                "dropout": 0.0,
            },
            "trajectories": [
                {k: m.get(k) for k in ("dataset", "split", "counts", "prompt_version", "teacher")}
                for m, _ in loaded
            ],
            "training": summary,
            "eval": {},
        },
    )
    typer.echo(
        f"wrote {out} ({manifest['training']['samples']} samples, "
        f"{manifest['training']['seconds']} s, {manifest['training']['seconds_per_sample']} s "
        "per sample)"
    )


@train.command()
def critic(
    out: Annotated[
        Path, typer.Option(help="Folder for critic.onnx, tokenizer.json, critic.json.")
    ] = Path("generation/critic_model"),
    max_pairs: Annotated[int, typer.Option(help="Labelled pairs to train on (one pass).")] = 30_000,
    minutes: Annotated[float, typer.Option(help="Stop training after this long.")] = 50.0,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Decision threshold to ship (default: the one in OUT/critic.json, else 0.5); "
            "choose it with scripts/bench_critic.py."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Shuffling and initialisation seed.")] = 7,
    data_dir: Annotated[Path, typer.Option(help="Folder of the public datasets.")] = Path(
        "../shared/datasets"
    ),
) -> None:
    """Train the answer critic (generation/critic.py): the embedder's MiniLM fine-tuned as a
    cross-encoder on (question, sentence) pairs of the train splits (training/critic_data.py),
    exported as int8 ONNX. 5% of the questions are held out and scored with the exported model."""
    from generation.critic import MANIFEST_FILE, AnswerCritic
    from training.critic import (
        TrainConfig,
        export,
        held_out,
        train,
        validation_metrics,
        write_manifest,
    )
    from training.critic_data import critic_pairs

    try:
        pairs = critic_pairs(data_dir, seed)
    except (OSError, ValueError, KeyError) as exc:
        typer.echo(f"cannot read the datasets in {data_dir}: {exc}", err=True)
        raise typer.Exit(2) from exc
    if threshold is None:
        manifest = out / MANIFEST_FILE
        threshold = json.loads(manifest.read_text())["threshold"] if manifest.is_file() else 0.5
    training, validation = held_out(pairs, 0.05, seed)
    typer.echo(f"{len(training)} training pairs, {len(validation)} held out", err=True)
    config = TrainConfig(max_pairs=max_pairs, minutes=minutes, seed=seed)
    try:
        model, _tokenizer, summary = train(training, config, lambda m: typer.echo(m, err=True))
        export(model, out, summary, threshold)
    except ImportError as exc:
        typer.echo(
            f"cannot train: {exc} (install the train extra: ./scripts/setup.sh test)", err=True
        )
        raise typer.Exit(2) from exc
    scored = AnswerCritic(out, threads=config.threads)
    summary["validation"] = validation_metrics(scored, validation)
    write_manifest(out, threshold, {"training": summary})
    typer.echo(f"wrote {out}: {json.dumps(summary['validation'])}")
