#!/usr/bin/env python3
"""Independent reference for tollgate-embed: all-MiniLM-L6-v2 as sentence-transformers runs it
(BERT forward, mean pooling over real tokens, L2 normalisation), written from scratch in float64
numpy over the same model.safetensors / tokenizer.json. Use it to check the Rust crate's figures
(tests/model.rs quotes its output) without torch, which these machines cannot install cheaply.

    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install numpy tokenizers
    /tmp/refvenv/bin/python scripts/embedding-reference.py "$TOLLGATE_EMBED_MODEL_DIR" cat kitten stocks

Prints each text's word-piece ids and first four components, then every pair's cosine.
"""
import json
import math
import struct
import sys

import numpy as np
from tokenizers import Tokenizer


def load(model_dir):
    with open(f"{model_dir}/model.safetensors", "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    weights = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":  # skips the I64 position_ids buffer
            continue
        start, end = meta["data_offsets"]
        weights[name] = np.frombuffer(data[start:end], dtype=np.float32).reshape(meta["shape"]).astype(np.float64)
    with open(f"{model_dir}/config.json") as f:
        config = json.load(f)
    tokenizer = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tokenizer.no_padding()  # one text at a time: no pads at all, so no mask is needed
    tokenizer.enable_truncation(256)  # sentence-transformers' max_seq_length
    return weights, config, tokenizer


def embed(text, weights, config, tokenizer):
    w, eps = weights, config["layer_norm_eps"]
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = hidden // heads

    def layer_norm(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[p + ".weight"] + w[p + ".bias"]

    def linear(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    erf = np.vectorize(math.erf)
    ids = tokenizer.encode(text).ids
    t = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:t]
        + w["embeddings.token_type_embeddings.weight"][[0] * t]
    )
    x = layer_norm(x, "embeddings.LayerNorm")
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (
            linear(x, p + f"attention.self.{n}").reshape(t, heads, head_dim).transpose(1, 0, 2)
            for n in ("query", "key", "value")
        )
        s = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(t, hidden)
        x = layer_norm(linear(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        h = linear(x, p + "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / math.sqrt(2)))  # exact (erf) GELU, BERT's "gelu"
        x = layer_norm(linear(h, p + "output.dense") + x, p + "output.LayerNorm")
    mean = x.mean(0)
    return ids, mean / np.linalg.norm(mean)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    model = load(sys.argv[1])
    texts = sys.argv[2:]
    vectors = []
    for text in texts:
        ids, vector = embed(text, *model)
        vectors.append(vector)
        print(f"{text!r}: ids {ids} head {np.array2string(vector[:4], precision=8)}")
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            print(f"cos({texts[i]!r}, {texts[j]!r}) = {vectors[i] @ vectors[j]:.6f}")


if __name__ == "__main__":
    main()
