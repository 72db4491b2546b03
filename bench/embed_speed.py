"""sentence-transformers' throughput on the chunks `trawl-bench embed-speed`
wrote, with the same model files; prints chunks/s on its last line and, given
a third argument, writes its vectors there (JSON) for the bench to compare.

    python3 -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers
    target/release/trawl-bench embed-speed --python /tmp/st/bin/python
"""
import json
import os
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from sentence_transformers import SentenceTransformer

texts = json.load(open(sys.argv[1]))
model = SentenceTransformer(sys.argv[2], device="cpu")
# The package's window, as trawl reads it (the cache keeps no
# sentence_bert_config.json, and the default would be the config's 512).
model.max_seq_length = 256
print(f"torch {torch.__version__} on {torch.get_num_threads()} threads, max_seq_length {model.max_seq_length}", file=sys.stderr)
model.encode(texts[:32], batch_size=32)
start = time.perf_counter()
vectors = model.encode(texts, batch_size=32, normalize_embeddings=True)
print(len(texts) / (time.perf_counter() - start))
if len(sys.argv) > 3:
    json.dump(vectors.tolist(), open(sys.argv[3], "w"))
