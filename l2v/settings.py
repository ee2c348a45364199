"""Run settings: what a training run does, as dataclasses (gpt-fast's ModelArgs, litgpt's TrainArgs).

    LoRASettings             the adapter: rank, α, dropout (lora.py)
    TrainSettings            what every stage shares: steps, batch, length, learning-rate schedule,
                             checkpoints, precision (train.py), and the LoRA
      MNTPSettings           + the masking rate                                 (mntp.py)
      SimCSESettings         + attention dropout, GradCache chunks               (simcse.py)
      SupervisedSettings     + GradCache chunks                                  (supervised.py)
    PRESETS[stage][name]     instances: "cpu" (a 135M model on a laptop CPU), "paper" (the paper's runs)

Each field is one line: its default, what it means, the values it may take (checked when the
object is made, so a bad value is an error before anything loads). The command line makes its
flags from these fields (`--lora-r` for `lora.r`), so a new setting is a field here plus the code
that reads it. A checkpoint stores the settings it was made with; `--resume` refuses to go on
under different ones, except those marked `resume_may_change` (they do not change what is computed).

    from dataclasses import replace
    s = replace(PRESETS["mntp"]["cpu"], steps=30)         # a variant of a preset
    s = with_overrides(s, lr=1e-4, lora_r=8)              # the same, by flat keyword (lora_r → lora.r)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace

from .runtime.checks import RANGES, L2VError, Range, check_range


def setting(default, help: str, allowed: Range | None = None, *, resume_may_change: bool = False,
            aliases: tuple = ()):
    """A settings field: its default, its --help text, the values it may take; aliases: older
    spellings of its command-line flag, still accepted."""
    return field(default=default, metadata=dict(help=help, allowed=allowed, resume_may_change=resume_may_change,
                                                aliases=aliases))


def check_fields(settings, prefix: str = ""):
    """Every field within its declared range; the error names the field as its flag does (lora_r)."""
    for f in fields(settings):
        if f.metadata.get("allowed") is not None:
            check_range(prefix + f.name, getattr(settings, f.name), f.metadata["allowed"])


@dataclass(frozen=True)
class LoRASettings:
    r: int = setting(16, "LoRA rank", Range(int, 1))
    alpha: float = setting(32, "LoRA scale α (the update is α/r · B·A)", Range(float, 0.0, low_ok=False))
    dropout: float = setting(0.05, "dropout on the LoRA branch's input", Range(float, 0.0, 1.0, high_ok=False))

    def __post_init__(self):
        check_fields(self, prefix="lora_")


@dataclass(frozen=True)
class TrainSettings:
    steps: int = setting(1000, "optimizer steps", Range(int, 1))
    batch_size: int = setting(32, "examples per micro-batch (blocks, sentences or triples)", RANGES["batch_size"])
    grad_accum: int = setting(1, "micro-batches per optimizer step", Range(int, 1))
    max_length: int = setting(512, "tokens per example", RANGES["max_length"])
    lr: float = setting(5e-5, "peak learning rate", Range(float, 0.0, low_ok=False))
    warmup_steps: int = setting(0, "linear warmup from 0, then linear decay to 0 at the last step", Range(int, 0))
    weight_decay: float = setting(0.0, "AdamW weight decay", Range(float, 0.0))
    max_grad_norm: float = setting(1.0, "gradient clipping (0: none)", Range(float, 0.0))
    eval_every: int = setting(0, "steps between evaluations (0: at the start and the end only)", Range(int, 0),
                              resume_may_change=True)
    save_every: int = setting(100, "steps between checkpoints (0: at the end only)", Range(int, 0),
                              resume_may_change=True)
    seed: int = setting(42, "seed of LoRA's initial A, the data order, the masks and dropout")
    autocast: bool | None = setting(None, "bf16 autocast (not given: on for CUDA, off for CPU; on a CPU, faster only "
                                    "with native bf16); weights and LoRA stay in their dtype")
    gradient_checkpointing: bool = setting(False, "keep only each block's input, recompute the rest in the backward "
                                           "pass: less memory, one more forward pass", resume_may_change=True)
    checkpoint_layers: int | None = setting(None, "checkpoint only the first N blocks (implies checkpointing): each "
                                            "block left out skips its recomputation; `l2v plan --memory-gb` says "
                                            "how many a GPU needs", Range(int, 0), resume_may_change=True)
    lora: LoRASettings = field(default_factory=LoRASettings)

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class MNTPSettings(TrainSettings):
    mask_prob: float | None = setting(None, "chance that a token is masked (default: the family's, "
                                            "mntp.FAMILY_MASKING: 0.2; mistral 0.8)",
                                      Range(float, 0.0, 1.0, low_ok=False))


@dataclass(frozen=True)
class SimCSESettings(TrainSettings):
    attention_dropout: float = setting(0.3, "attention dropout, the source of the two views",
                                       Range(float, 0.0, 1.0, high_ok=False), aliases=("--dropout",))
    chunk_size: int | None = setting(None, "GradCache: sentences embedded per pass (None: the whole batch at once)",
                                     RANGES["chunk_size"])
    matryoshka: int | None = setting(None, "Matryoshka: also train each halving of the embedding down to this size "
                                           "(None: the full size only)", Range(int, 1))

    def __post_init__(self):
        super().__post_init__()
        if self.batch_size < 2:
            raise L2VError("--batch-size must be at least 2: the other sentences in the batch are the negatives")


@dataclass(frozen=True)
class SupervisedSettings(TrainSettings):
    chunk_size: int | None = setting(None, "GradCache: triples embedded per pass (None: the whole batch at once)",
                                     RANGES["chunk_size"])
    matryoshka: int | None = setting(None, "Matryoshka: also train each halving of the embedding down to this size "
                                           "(None: the full size only)", Range(int, 1))

    def __post_init__(self):
        super().__post_init__()
        if self.batch_size < 2:
            raise L2VError("--batch-size must be at least 2: the other rows in the batch are the negatives")


PRESETS = {
    "mntp": {
        # SmolLM2-135M on a laptop CPU: the demo's `cpu` budget (docs/results.md has its time).
        "cpu": MNTPSettings(steps=60, batch_size=8, max_length=128, lr=2e-4, warmup_steps=5, save_every=20),
        # The paper: 1000 steps, batch 32 × 512 tokens, lr 5e-5, LoRA r16/α32/p0.05, bf16 (one A100, ~100 min for 7B).
        "paper": MNTPSettings(steps=1000, batch_size=32, max_length=512, lr=5e-5, save_every=200),
    },
    "simcse": {
        # A higher lr than the paper's: at 3e-5 nothing moves in a few dozen steps.
        "cpu": SimCSESettings(steps=40, batch_size=16, max_length=64, lr=3e-4, warmup_steps=4, save_every=20),
        # The paper: batch 128, max length 128, lr 3e-5, 1000 steps, attention dropout 0.3.
        "paper": SimCSESettings(steps=1000, batch_size=128, max_length=128, lr=3e-5, save_every=200),
    },
    "supervised": {
        "cpu": SupervisedSettings(steps=20, batch_size=8, max_length=64, lr=2e-4, warmup_steps=2, save_every=10),
        # The paper: the E5 mixture, batch 512, lr 2e-4, 1000 steps, max length 512, warmup 300 (on 8 GPUs).
        # GradCache in chunks of 64 triples fits it on one 80 GB GPU with gradient checkpointing
        # (`l2v plan`: 66-71 GiB for 7-8B models); with torchrun on 8 GPUs each process's 64 are one chunk.
        "paper": SupervisedSettings(steps=1000, batch_size=512, max_length=512, lr=2e-4, warmup_steps=300,
                                    save_every=200, chunk_size=64),
    },
}


def with_overrides(settings, **overrides):
    """`replace` by flat keyword: a nested settings' fields go by their prefixed name (lora_r → lora.r),
    as on the command line. None keeps the value (an option not given)."""
    flat, nested = {}, {}
    names = {f.name: f for f in fields(settings)}
    for key, value in overrides.items():
        if value is None:
            continue
        if key in names:  # a field, whole (lora=LoRASettings(r=8) too)
            flat[key] = value
            continue
        outer, _, inner = key.partition("_")
        if outer in names and is_dataclass(getattr(settings, outer)):
            nested.setdefault(outer, {})[inner] = value
        else:
            raise TypeError(f"{type(settings).__name__} has no setting {key!r}")
    for outer, values in nested.items():
        flat[outer] = replace(getattr(settings, outer), **values)
    return replace(settings, **flat)


def resolve(stage: str, settings=None, preset: str = "cpu", **overrides):
    """The settings a run uses: `settings` (or the stage's preset by name), then keyword overrides.
    Settings built already (the command line builds them from its flags) come back as they are."""
    if settings is None:
        if preset not in PRESETS[stage]:
            raise L2VError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS[stage])}")
        settings = PRESETS[stage][preset]
    kind = type(PRESETS[stage]["cpu"])
    if not isinstance(settings, kind):
        raise L2VError(f"the {stage} stage takes {kind.__name__}, not {type(settings).__name__}")
    return with_overrides(settings, **overrides) if overrides else settings
