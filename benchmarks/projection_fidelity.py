"""How well each projection design keeps the cosines of real per-example LoRA gradients (issue 20).

    python benchmarks/projection_fidelity.py [--pool 240] [--targets 32] [--max-length 256] [--dims 2048 8192]

SmolLM2-135M-Instruct with LoRA r=128, alpha=512 on q/k/v/o (LESS's and BIDS's adapters), warmed up
briefly on other pool examples so that LoRA-B is not zero and LoRA-A has gradients (a fresh adapter
has B = 0, so every A gradient would be 0). The pool is a seeded sample of GSM8K-train and
GPTeacher-code examples, the targets MMLU validation questions (LESS's kind of target), at most
``--max-length`` tokens. Gradients are the raw (SGD) per-example gradients of the project's loss
with respect to every LoRA weight (~15M numbers per example), not Adam-preconditioned.

Exact: each example's full gradient is written to a float32 file under /tmp (deleted at the end;
16 GB at the defaults), and the exact Gram matrix is read back in column blocks. Memory: the
recorded run (batches of 2,048 tokens, the dense check drawn a whole column block at a time)
peaked at 11.3 GB resident; batches are now 1,024 tokens and the dense check is drawn in slices.
Projected, at each k: ``row_signs`` (the default), ``shared_rows`` (the design before issue 20), a
Kronecker-factored R1ᵀ G R2 with both sides compressed (LoGra-style, k1·k2 = k, k1 ≈ √k), and a
dense Gaussian projection of the whole gradient (LESS's). The dense one is drawn exactly, not
approximated: for a D × k matrix of iid N(0, 1/k) entries, the projections of N vectors with Gram
matrix K are distributed as C Z, C Cᵀ = K, Z an N × k iid N(0, 1/k) matrix (rotation invariance), so
it costs nothing at D = 15M. ``--blockwise-k`` also projects with a real dense Rademacher matrix,
generated block by block from a seed during the Gram pass, as a check on that identity.

Reported per design and k: the SD and max of (projected − exact) cosine over all pairs of pool and
target examples; the Spearman correlation of each pool example's score (its mean cosine to the
targets, as LESS ranks) with the exact score; and the overlap of the top-5% selection with the
exact one. Dense's figures are the mean over ``--dense-draws`` draws.
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import DATA_DIR, real_examples
from instruct_select.config import LoraSettings, TrainSettings
from instruct_select.data.batching import collate, token_budget_batches
from instruct_select.data.chat import tokenize_examples
from instruct_select.data.loading import load_examples
from instruct_select.features.gradients import layer_gradient, lora_modules, per_example_output_grads
from instruct_select.features.projection import LayerwiseProjector
from instruct_select.models.loading import load_base_model, load_tokenizer
from instruct_select.models.real import prepare_real_model
from instruct_select.train.loop import train_model

DESIGNS = ("row_signs", "shared_rows")
DENSE_ROWS = 1 << 16  # rows of the blockwise dense matrix drawn at a time: 256 MiB of float32 at k = 1,024


class Kronecker:
    """R1ᵀ G R2 per layer with seeded Rademacher R1 (small × k1), R2 (big × k2), k1·k2 = k, k1 ≈ √k."""

    def __init__(self, shapes: dict[str, tuple[int, int]], dim: int, seed: int):
        k1 = max(d for d in range(1, int(dim ** 0.5) + 1) if dim % d == 0)
        self.dim, self.mats = dim, {}
        for i, (name, (a, b)) in enumerate(sorted(shapes.items())):
            small, big = min(a, b), max(a, b)
            gen = torch.Generator().manual_seed(seed * 100_003 + i)
            r1 = (torch.randint(0, 2, (small, k1), generator=gen).float() * 2 - 1) * k1 ** -0.5
            r2 = (torch.randint(0, 2, (big, dim // k1), generator=gen).float() * 2 - 1) * (dim // k1) ** -0.5
            self.mats[name] = (a > b, r1, r2)

    def project_layer(self, name: str, grads: torch.Tensor) -> torch.Tensor:
        transpose, r1, r2 = self.mats[name]
        g = grads.transpose(1, 2) if transpose else grads
        return (r1.t() @ g @ r2).reshape(g.shape[0], -1)


def cosines(features: np.ndarray) -> np.ndarray:
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-30)
    return f @ f.T


def fidelity(approx: np.ndarray, exact: np.ndarray, n_pool: int, top: int) -> dict:
    """Pairwise cosine error, and the LESS-style ranking of the pool by mean cosine to the targets."""
    upper = np.triu_indices(len(exact), 1)
    err = approx[upper] - exact[upper]
    score_exact = exact[:n_pool, n_pool:].mean(axis=1)
    score = approx[:n_pool, n_pool:].mean(axis=1)
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731  (no ties in real-valued scores)
    spearman = np.corrcoef(rank(score), rank(score_exact))[0, 1]
    chosen = set(np.argsort(-score)[:top]) & set(np.argsort(-score_exact)[:top])
    return {"sd": float(err.std()), "max": float(np.abs(err).max()), "spearman": float(spearman),
            "overlap": len(chosen) / top}


def examples(tokenizer, n_pool: int, n_targets: int, n_warm: int, max_length: int):
    """Warmup examples, then the pool's and the targets' tokenised items (pool first), drawn from
    twice as many so that those left without a response token at ``max_length`` can be passed over."""
    pool = real_examples(2 * (n_pool + n_warm), seed=20)
    random.Random(20).shuffle(pool)
    targets = random.Random(21).sample(load_examples(Path(DATA_DIR) / "mmlu_val.jsonl").examples, 2 * n_targets)
    pool_items, _ = tokenize_examples(tokenizer, pool[n_warm:], max_length)
    target_items, _ = tokenize_examples(tokenizer, targets, max_length)
    if len(pool_items) < n_pool or len(target_items) < n_targets:
        raise SystemExit(f"too few examples with a response within {max_length} tokens; raise --max-length")
    return pool[:n_warm], pool_items[:n_pool] + target_items[:n_targets], n_pool


def warmed_up_model(folder: Path, warm_examples, max_length: int, tmp: Path):
    settings = TrainSettings(epochs=2, learning_rate=2e-4, warmup_ratio=0.0, batching="token_budget",
                             max_length=max_length, lora=LoraSettings(r=128, alpha=512, dropout=0.0))
    trained = train_model(load_base_model(folder), load_tokenizer(folder), warm_examples, settings,
                          tmp / "warmup")
    return trained.model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=240)
    parser.add_argument("--targets", type=int, default=32)
    parser.add_argument("--warmup-examples", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--dims", type=int, nargs="+", default=[2048, 8192])
    parser.add_argument("--dense-draws", type=int, default=5)
    parser.add_argument("--blockwise-k", type=int, default=512, help="k of the real dense Rademacher check (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.time()
    folder = prepare_real_model("smollm2-135m")
    tokenizer = load_tokenizer(folder)
    warm, items, n_pool = examples(tokenizer, args.pool, args.targets, args.warmup_examples, args.max_length)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        model = warmed_up_model(folder, warm, args.max_length, Path(tmp))
        print(f"warmup: {time.time() - started:.0f} s", flush=True)
        modules = lora_modules(model)
        shapes = {name: tuple(m.weight.shape) for name, m in modules.items()}
        offsets, total = {}, 0
        for name, (a, b) in shapes.items():
            offsets[name] = (total, total + a * b)
            total += a * b
        projectors = {(d, k): LayerwiseProjector(shapes, k, args.seed, design=d) for d in DESIGNS for k in args.dims}
        projectors.update({("kronecker", k): Kronecker(shapes, k, args.seed) for k in args.dims})
        features = {key: np.zeros((len(items), key[1]), dtype=np.float64) for key in projectors}
        path = Path(tmp) / "gradients.f32"
        norms_a, norms_b = np.zeros(len(items)), np.zeros(len(items))
        with open(path, "wb") as out:
            out.truncate(len(items) * total * 4)
        fd = os.open(path, os.O_RDWR)
        try:
            done = 0
            for batch_indices in token_budget_batches(items, 1024, 4):  # 2048 tokens peaked at 11 GB
                batch = collate([items[i] for i in batch_indices], tokenizer.pad_token_id)
                _, io = per_example_output_grads(model, batch, modules)
                flat = np.empty((len(batch_indices), total), dtype=np.float32)
                for name in shapes:
                    g = layer_gradient(*io.pop(name))
                    start, stop = offsets[name]
                    flat[:, start:stop] = g.reshape(len(batch_indices), -1).numpy()
                    part = (norms_a if ".lora_A." in name else norms_b)
                    part[batch_indices] += (g.reshape(len(batch_indices), -1) ** 2).sum(1).double().numpy()
                    with torch.no_grad():
                        for key, projector in projectors.items():
                            features[key][batch_indices] += projector.project_layer(name, g).double().numpy()
                for row, index in enumerate(batch_indices):
                    os.pwrite(fd, flat[row].tobytes(), index * total * 4)
                done += len(batch_indices)
                print(f"gradients: {done}/{len(items)} examples, {time.time() - started:.0f} s", flush=True)
            exact_gram, blockwise = gram_and_blockwise_dense(fd, len(items), total, args.blockwise_k, args.seed)
        finally:
            os.close(fd)
    report(args, items, n_pool, total, exact_gram, features, blockwise, norms_a, norms_b, time.time() - started)


def gram_and_blockwise_dense(fd: int, n: int, total: int, blockwise_k: int, seed: int, block: int = 1 << 19):
    """The exact Gram matrix, read back in column blocks; with ``blockwise_k``, also the features of
    a dense Rademacher projection whose rows are drawn block by block from ``seed``."""
    gram = np.zeros((n, n))
    dense = np.zeros((n, blockwise_k)) if blockwise_k else None
    buf = np.empty((n, block), dtype=np.float32)
    for start in range(0, total, block):
        width = min(block, total - start)
        for row in range(n):
            buf[row, :width] = np.frombuffer(os.pread(fd, width * 4, (row * total + start) * 4), dtype=np.float32)
        x = torch.from_numpy(buf[:, :width])
        gram += (x @ x.T).double().numpy()
        if dense is not None:  # the dense matrix's rows start..start+width, drawn in slices (memory)
            for first in range(0, width, DENSE_ROWS):
                rows = min(DENSE_ROWS, width - first)
                gen = torch.Generator().manual_seed(seed * 1_000_003 + start + first)
                r = torch.randint(0, 2, (rows, blockwise_k), generator=gen, dtype=torch.int8).float().mul_(2).sub_(1)
                dense += (x[:, first:first + rows] @ r).double().numpy() * blockwise_k ** -0.5
    return gram, dense


def dense_gaussian(gram: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Features distributed exactly as a dense iid N(0, 1/k) projection of the vectors with this Gram."""
    w, v = np.linalg.eigh(gram)
    root = v * np.sqrt(np.clip(w, 0, None))  # root @ root.T == gram
    return root @ rng.standard_normal((len(gram), k)) / np.sqrt(k)


def report(args, items, n_pool, total, gram, features, blockwise, norms_a, norms_b, elapsed) -> None:
    exact = cosines_from_gram(gram)
    top = max(1, round(0.05 * n_pool))
    upper = np.triu_indices(len(exact), 1)
    print(f"\n{len(items)} examples ({n_pool} pool, {len(items) - n_pool} targets), "
          f"{np.mean([len(it) for it in items]):.0f} tokens on average; gradient size {total:,}; "
          f"LoRA-A share of the squared norm {np.median(norms_a / (norms_a + norms_b)):.3f} (median); "
          f"exact cosines: mean {exact[upper].mean():.3f}, SD {exact[upper].std():.3f}; top 5% = {top}; "
          f"{elapsed:.0f} s")
    print("\n| k | design | cosine error SD | × dense | max error | Spearman of scores | top-5% overlap |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(args.seed)
    for k in args.dims:
        draws = [fidelity(cosines(dense_gaussian(gram, k, rng)), exact, n_pool, top) for _ in range(args.dense_draws)]
        dense = {key: float(np.mean([d[key] for d in draws])) for key in draws[0]}
        rows = [(f"dense Gaussian (LESS; mean of {args.dense_draws})", dense)]
        rows += [(d, fidelity(cosines(features[(d, k)]), exact, n_pool, top))
                 for d in ("row_signs", "shared_rows", "kronecker")]
        for name, m in rows:
            print(f"| {k} | {name} | {m['sd']:.4f} | {m['sd'] / dense['sd']:.2f} | {m['max']:.3f} | "
                  f"{m['spearman']:.3f} | {m['overlap']:.2f} |")
    if blockwise is not None:
        k = blockwise.shape[1]
        real = fidelity(cosines(blockwise), exact, n_pool, top)
        drawn = fidelity(cosines(dense_gaussian(gram, k, rng)), exact, n_pool, top)
        print(f"\ncheck at k={k}: a real dense Rademacher matrix (drawn block by block) gives error SD "
              f"{real['sd']:.4f}; the Gram-based dense Gaussian draw {drawn['sd']:.4f}")


def cosines_from_gram(gram: np.ndarray) -> np.ndarray:
    d = np.sqrt(np.clip(np.diag(gram), 1e-300, None))
    return gram / d[:, None] / d[None, :]


if __name__ == "__main__":
    main()
