"""Working memory per token of each per-example stage on SmolLM2-135M: the measured basis of docs/MEMORY.md.

    python benchmarks/memory_per_token.py [--dtype bfloat16] [--r 128] [--dropout 0.1] [--length 512] [--batches 2,4]

SmolLM2-135M-Instruct with the recipe's LoRA (r, alpha = 4r, dropout, on q/k/v/o), batches of
``--length``-token sequences (real token ids of real pool examples, the response half labelled),
``--batches`` sequences at a time. For each pass, its peak resident memory above the loaded model
(``common.peak_mib``: exact, not sampled) at every batch size; the slope between the sizes is the
cost of one more token, the intercept what a pass holds whatever the batch (the projection
matrices, the loss's head chunk, buffers). Passes:

  train      a training forward+backward (warmup, fine-tuning)
  features   projected Adam features, k = 8,192 (the gradient-feature stage)
  loss       a loss-only pass (loss trajectories, IFD, evaluation by loss)
  body       the model's body only, no head (hidden states, embeddings, RDS+ representations)

Also counts what autograd saves per token and layer, by width (h, i, kv, r) and dtype
(``saved_per_token``): the train slope checks the count, and docs/MEMORY.md puts another
model's widths into it.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from common import peak_mib, resident_mib, training_side_examples
from instruct_select.config import FeatureSettings, LoraSettings
from instruct_select.data.batching import collate
from instruct_select.data.chat import TokenizedExample, tokenize_examples
from instruct_select.features.extract import make_projector, projected_features
from instruct_select.features.gradients import lora_modules
from instruct_select.features.optimizer_state import AdamMoments
from instruct_select.loss import backbone_and_head, model_per_example_loss
from instruct_select.models.loading import add_lora, load_base_model, load_tokenizer
from instruct_select.models.real import prepare_real_model
from instruct_select.train.checkpoint import load_checkpoint, save_checkpoint


def saved_per_token(model, batch: dict) -> dict[tuple[str, str], float]:
    """What autograd keeps for one training forward, per token and decoder layer, by width and dtype:
    {("h" | "i" | "kv" | "r" | "heads", dtype): tensors per layer}. Each saved activation (a tensor
    with one row per token) is counted once by its storage; its width per token is named by the
    model dimension it equals, so the same counts give any Llama's bytes (docs/MEMORY.md)."""
    config = model.get_base_model().config
    names = {config.hidden_size: "h", config.intermediate_size: "i", config.num_attention_heads: "heads",
             config.num_key_value_heads * config.head_dim: "kv", model.peft_config["default"].r: "r"}
    tokens = batch["input_ids"].numel()
    seen: dict[int, tuple[int, str]] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        per_token, rest = divmod(storage.nbytes() // tensor.element_size(), tokens)
        if not rest and tokens in _token_dims(tensor) and per_token in names:
            seen.setdefault(storage.data_ptr(), (per_token, str(tensor.dtype).replace("torch.", "")))
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model_per_example_loss(model, batch)
    model.eval()
    counts: dict[tuple[str, str], float] = {}
    for width, dtype in seen.values():
        counts[names[width], dtype] = counts.get((names[width], dtype), 0) + 1 / config.num_hidden_layers
    return counts


def _token_dims(tensor) -> set[int]:
    """The sizes a tensor's leading dimensions can give the token count with: B·T, or T with B = 1."""
    shape = tensor.shape
    return {shape[0] * shape[1] if len(shape) > 1 else shape[0], *shape[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--r", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--batches", default="2,4")
    parser.add_argument("--passes", default="train,features,loss,body")
    args = parser.parse_args()
    folder = prepare_real_model("smollm2-135m")
    tokenizer = load_tokenizer(folder)
    model = add_lora(load_base_model(folder, args.dtype, "cpu"),
                     LoraSettings(r=args.r, alpha=4 * args.r, dropout=args.dropout))
    config = model.get_base_model().config
    sizes = [int(b) for b in args.batches.split(",")]
    rows = _rows(tokenizer, max(sizes), args.length)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        moments = _moments(model, collate(rows[:1], tokenizer.pad_token_id), Path(tmp))
    projector = make_projector(model, FeatureSettings(dim=8192))
    backbone, _ = backbone_and_head(model)

    def train(batch):
        model.train()  # dropout on, as in training
        model_per_example_loss(model, batch).mean().backward()
        model.zero_grad(set_to_none=True)
        model.eval()

    def features(batch):
        projected_features(model, batch, projector, moments, {})

    def loss(batch):
        with torch.inference_mode():
            model_per_example_loss(model, batch)

    def body(batch):
        with torch.inference_mode():
            backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)

    features(collate(rows[:1], tokenizer.pad_token_id))  # draws the projection matrices
    print(f"SmolLM2-135M-Instruct in {args.dtype}, LoRA r={args.r} alpha={4 * args.r} dropout={args.dropout} on "
          f"q/k/v/o, sequences of {args.length} tokens (about half labelled); resident with the model, adapters, "
          f"moments and projection: {resident_mib():.0f} MiB")
    print(f"{'pass':9s} " + " ".join(f"{f'{b} x {args.length}':>12s}" for b in sizes)
          + f" {'per token (KiB)':>16s} {'intercept (MiB)':>16s}")
    passes = {"train": train, "features": features, "loss": loss, "body": body}
    for name, fn in ((name, passes[name]) for name in args.passes.split(",")):
        peaks = [peak_mib(lambda: fn(collate(rows[:b], tokenizer.pad_token_id))) for b in sizes]
        slope = (peaks[-1] - peaks[0]) / ((sizes[-1] - sizes[0]) * args.length)
        intercept = peaks[0] - slope * sizes[0] * args.length
        print(f"{name:9s} " + " ".join(f"{p:12.0f}" for p in peaks) + f" {slope * 1024:16.1f} {intercept:16.0f}")
    counts = saved_per_token(model, collate(rows[:1], tokenizer.pad_token_id))
    dims = {"h": config.hidden_size, "i": config.intermediate_size, "kv": config.num_key_value_heads * config.head_dim,
            "r": args.r, "heads": config.num_attention_heads}
    size = {"float32": 4, "bfloat16": 2, "float16": 2, "bool": 1}
    total = sum(n * dims[w] * size[d] for (w, d), n in counts.items())
    print("saved by autograd per token and layer (tensors per layer, by width and dtype): "
          + ", ".join(f"{n:.1f} x {w} {d}" for (w, d), n in sorted(counts.items())))
    print(f"  = {total} bytes per token and layer; x {config.num_hidden_layers} layers = "
          f"{total * config.num_hidden_layers / 1024:.1f} KiB per token (compare the train slope)")


def _rows(tokenizer, n: int, length: int) -> list[TokenizedExample]:
    """``n`` sequences of exactly ``length`` tokens: real examples joined as one multi-turn chat."""
    items, _ = tokenize_examples(tokenizer, training_side_examples()[:400], 100_000)
    stream_ids, stream_labels = [], []
    for item in items:
        stream_ids.extend(item.input_ids)
        stream_labels.extend(item.labels)
    return [TokenizedExample(f"r{i}", stream_ids[i * length:(i + 1) * length],
                             stream_labels[i * length:(i + 1) * length]) for i in range(n)]


def _moments(model, batch, tmp: Path) -> AdamMoments:
    """Real Adam moments after one step, through a saved checkpoint (as the features stage reads them)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([p for _, p in named], lr=1e-4)
    model_per_example_loss(model, batch).mean().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    save_checkpoint(tmp / "epoch-1", model, optimizer, {"epoch": 1, "mean_lr": 1e-4, "step": 1})
    return AdamMoments(load_checkpoint(tmp / "epoch-1"), list(lora_modules(model)))


if __name__ == "__main__":
    main()
