"""The far side of tests/test_export.py's plain-folder round trips: a process where l2v cannot be imported.

    python st_side.py FOLDER REQUEST.json OUT.npz

REQUEST: {"texts": [...], "long": [...], "prompt": "...", "autocast": false}. Writes what sentence-transformers
(no trust_remote_code) and plain transformers AutoModel give: embeddings, and the token ids and prompt length
sentence-transformers feeds its model for the first query.
"""

import json
import sys

sys.modules["l2v"] = None  # `import l2v` now raises ImportError: nothing below may lean on it
try:
    import l2v  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("l2v is importable: this side must run without it")

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

folder, request, out = sys.argv[1:4]
req = json.loads(open(request).read())
st = SentenceTransformer(folder, device="cpu")  # no trust_remote_code: standard modules only
features = st.preprocess(req["texts"][:1], prompt=req["prompt"])
result = dict(
    documents=st.encode_document(req["texts"]), plain=st.encode(req["texts"]), long=st.encode(req["long"]),
    queries=st.encode_query(req["texts"]),  # the folder's own "query" prompt
    query_ids=features["input_ids"][0][features["attention_mask"][0].bool()].numpy(),
    prompt_length=np.array(features["prompt_length"]), max_seq_length=np.array(st.max_seq_length),
    modules=np.array([type(m).__name__ for m in st]))

tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
batch = tok(req["texts"], return_tensors="pt", padding=True, truncation=True, max_length=int(st.max_seq_length))
with torch.no_grad():
    hidden = model(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1).float()
result["automodel"] = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
np.savez(out, **result)
