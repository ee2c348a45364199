"""The official llm2vec 0.2.3's side of tests/test_llm2vec_interop.py.

llm2vec pins transformers>=4.43.1,<=4.44.2 while l2v's tests run transformers 5, so this script runs
in a virtual environment of its own (built by the test) and never imports l2v: only torch,
transformers 4.44, peft, llm2vec, numpy and safetensors.

    python llm2vec_side.py make-base BASE                       # tiny random LLaMA (tokenizer: the test's)
    python llm2vec_side.py make-adapters BASE MNTP SIMCSE       # two random LoRAs, saved by LLM2Vec.save
    python llm2vec_side.py encode BASE ITEMS.json OUT.npy [MNTP [SIMCSE]] [--tokens TOKENS.json]
"""

import argparse
import json
import os

import numpy as np
import torch
import transformers
from llm2vec import LLM2Vec
from peft import LoraConfig, PeftModel, get_peft_model

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
OPTIONS = dict(enable_bidirectional=True, pooling_mode="mean", max_length=512, torch_dtype=torch.float32)


def make_base(base):
    cfg = transformers.LlamaConfig(vocab_size=400, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
                                   num_attention_heads=4, num_key_value_heads=2, bos_token_id=1, eos_token_id=2,
                                   pad_token_id=0)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # HF initialises norms to ones; random values make the check stronger
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    model.save_pretrained(base, safe_serialization=True)


def add_random_lora(l2v_model, seed):
    """A LoRA on the inner bidirectional model, as llm2vec's run_mntp.py / run_simcse.py do
    (initialize_peft), with random A *and* B so that it visibly changes the embeddings."""
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS, bias="none")
    l2v_model.model = get_peft_model(l2v_model.model, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in l2v_model.model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.normal_(0.0, 0.05)


def make_adapters(base, mntp, simcse):
    model = LLM2Vec.from_pretrained(base, **OPTIONS)
    add_random_lora(model, seed=1)
    model.save(mntp)  # the PEFT adapter, the tokenizer and llm2vec_config.json
    model.model = model.model.merge_and_unload()  # SimCSE trains on top of the merged MNTP model
    add_random_lora(model, seed=2)
    model.save(simcse)


def load(base, adapters):
    """As llm2vec's README loads an MNTP + SimCSE pair: MNTP merged, SimCSE on top."""
    mntp, simcse = (list(adapters) + [None, None])[:2]
    options = dict(OPTIONS)
    if os.path.isfile(os.path.join(base, "llm2vec_config.json")):  # an export: its own pooling and lengths
        options = {k: v for k, v in options.items() if k not in ("pooling_mode", "max_length")}
    model = LLM2Vec.from_pretrained(base, peft_model_name_or_path=mntp, merge_peft=True, **options)
    if simcse:
        model.model = PeftModel.from_pretrained(model.model, simcse)
    return model


def items_from(path):
    """JSON list of plain strings (documents) and [instruction, text] pairs (queries) → all pairs:
    llm2vec's encode turns strings into ["", text] only when the *first* item is a string."""
    return [["", x] if isinstance(x, str) else list(x) for x in json.load(open(path))]


def tokens(model, item):
    """What llm2vec's encode feeds the model for one item, unpadded: its ids, and how many of the last
    ones it pools (the text's own tokens; a query's instruction is attended to, not pooled)."""
    instruction, text = item
    f = model.tokenize([model.prepare_for_tokenization(model._convert_to_str(instruction, text))])
    return dict(ids=f["input_ids"][0].tolist(), pooled=int(f["embed_mask"][0].sum()))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("make-base").add_argument("base")
    a = sub.add_parser("make-adapters")
    a.add_argument("base"), a.add_argument("mntp"), a.add_argument("simcse")
    e = sub.add_parser("encode")
    e.add_argument("base"), e.add_argument("items"), e.add_argument("out"), e.add_argument("adapters", nargs="*")
    e.add_argument("--tokens", help="also write each item's ids and how many trailing ones llm2vec pools")
    args = p.parse_args()

    if args.cmd == "make-base":
        make_base(args.base)
    elif args.cmd == "make-adapters":
        make_adapters(args.base, args.mntp, args.simcse)
    else:
        model, items = load(args.base, args.adapters), items_from(args.items)
        np.save(args.out, model.encode(items, batch_size=32, convert_to_numpy=True, device="cpu",
                                       show_progress_bar=False))
        if args.tokens:
            json.dump([tokens(model, item) for item in items], open(args.tokens, "w"))


if __name__ == "__main__":
    main()
