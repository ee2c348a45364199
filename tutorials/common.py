"""What every notebook shares: which model it runs on.

TINY mode (`L2V_TINY=1`, what CI runs): a random 2-layer LLaMA with a 400-token byte-level BPE
trained on the sentences below — every notebook finishes in seconds, and the numbers mean nothing.
Normal mode: the embedded default, SmolLM2-135M-Instruct (`l2v fetch smollm2` first).

`show(key, value)` is how a notebook prints a number worth comparing: in TINY mode it puts the
SmolLM2 value beside it, read from smollm2_values.json, which `python tutorials/render.py` writes
while it runs every notebook on the real model (L2V_RECORD=1). No number is typed in by hand.
"""

import json
import os
import tempfile
from pathlib import Path

TINY = os.environ.get("L2V_TINY") == "1"
RECORD = os.environ.get("L2V_RECORD") == "1" and not TINY  # set by render.py: keep the real run's values
CHECK = os.environ.get("L2V_CHECK_VALUES")  # a file: a real run's values go there, to compare with the recorded ones
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "weights" / "smollm2-135m-instruct"
VALUES = Path(__file__).resolve().parent / "smollm2_values.json"
TINY_NOTE = ("TINY mode: a random 2-layer model. The numbers below only prove that the code runs; each "
             "comparison prints the SmolLM2-135M value from the last real run beside it.")

SENTENCES = [
    "The cat sat on the mat.", "A dog ran in the park.", "Stock markets fell sharply today.",
    "Photosynthesis turns light into sugar.", "Paris is the capital of France.",
    "The quick brown fox jumps over the lazy dog.", "Rain is expected tomorrow in the north.",
    "The river bank was flooded after the storm.", "She deposited the money at the bank.",
    "Plants need water and light to grow.", "The museum opens at nine in the morning.",
    "A new bridge was built across the river.",
]

_tiny_folder = None


def model_folder() -> Path:
    """The model folder the notebook uses: the tiny random model in TINY mode, else SmolLM2."""
    if TINY:
        return tiny_model_folder()
    if not (DEFAULT_MODEL / "config.json").is_file():
        raise FileNotFoundError(f"{DEFAULT_MODEL} not found: run `l2v fetch smollm2` (or set L2V_TINY=1)")
    return DEFAULT_MODEL


def tiny_model_folder() -> Path:
    """A random 2-layer LLaMA saved by transformers, plus a tokenizer: made once per kernel."""
    global _tiny_folder
    if _tiny_folder is None:
        import torch
        import transformers

        folder = Path(tempfile.mkdtemp(prefix="l2v-tiny-"))
        cfg = transformers.LlamaConfig(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2,
                                       bos_token_id=1, eos_token_id=2, pad_token_id=0)
        torch.manual_seed(0)
        transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
        write_tiny_tokenizer(folder, SENTENCES * 10, vocab_size=cfg.vocab_size)
        _tiny_folder = folder
    return _tiny_folder


def write_tiny_tokenizer(folder, texts: list[str], vocab_size: int = 400, add_bos: bool = True):
    """A byte-level BPE trained on `texts`, with LLaMA-2-style <s> … </s> settings (the tests use it too)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder = Path(folder)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<pad>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(dict(
        add_bos_token=add_bos, add_eos_token=False, bos_token="<s>", eos_token="</s>", pad_token="<pad>")))


# Issue 19: one tiny random model per decoder family (notebook 09). Real checkpoints of these
# families are not on PyPI, so this notebook uses the tiny models in both modes.
FAMILY_CONFIGS = {
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", dict(sliding_window=4)),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", dict(head_dim=32)),
    "gemma": ("GemmaConfig", dict(head_dim=32)),
    "gemma2": ("Gemma2Config", dict(head_dim=32, sliding_window=4, query_pre_attn_scalar=32)),
}
_family_folders = {}


def tiny_family_folder(family: str) -> Path:
    """A random 2-layer model of `family` saved by transformers (random norms and biases, so every
    switch shows), plus the tiny tokenizer: made once per kernel."""
    if family not in _family_folders:
        import torch
        import transformers

        cls, extra = FAMILY_CONFIGS[family]
        cfg = getattr(transformers, cls)(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, bos_token_id=1,
                                         eos_token_id=2, pad_token_id=0, **extra)
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("norm.weight"):  # Gemma's norms scale by 1 + w: around 1 either way
                    p.uniform_(-0.5, 0.5) if family.startswith("gemma") else p.uniform_(0.5, 1.5)
                elif name.endswith(".bias"):
                    p.normal_(0.0, 0.1)
        folder = Path(tempfile.mkdtemp(prefix=f"l2v-{family}-"))
        model.save_pretrained(folder)
        write_tiny_tokenizer(folder, SENTENCES * 10, vocab_size=cfg.vocab_size, add_bos=not family.startswith("qwen"))
        _family_folders[family] = folder
    return _family_folders[family]


def reference_values() -> dict:
    return json.loads(VALUES.read_text()) if VALUES.is_file() else {}


def show(key: str, value, fmt: str = "{:.3f}") -> str:
    """`value` formatted; in TINY mode followed by SmolLM2's value for `key` from the last real run.
    With L2V_RECORD=1 (render.py, normal mode) the value is stored under `key` for that purpose."""
    text = value if isinstance(value, str) else fmt.format(value)
    if RECORD:
        values = reference_values()
        values[key] = text
        VALUES.write_text(json.dumps(values, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    if CHECK and not TINY:  # tests/test_tutorials.py: does today's code still print what was recorded?
        path = Path(CHECK)
        values = json.loads(path.read_text()) if path.is_file() else {}
        path.write_text(json.dumps({**values, key: text}, indent=1, ensure_ascii=False))
    if TINY:
        reference = reference_values().get(key, "not recorded yet: run python tutorials/render.py")
        text = f"{text}   [SmolLM2: {reference}]" if "\n" not in reference else f"{text}\n[SmolLM2:]\n{reference}"
    return text


def banner():
    """The first line a notebook prints: which model, and what its numbers are worth."""
    print(TINY_NOTE if TINY else f"Model: {DEFAULT_MODEL.name} (the real one: these numbers are meaningful).")
