"""Evaluation's greedy generation against plain ``model.generate`` on the same prompts: tokens/s.

    flock /tmp/is-heavy.lock python benchmarks/generation_speed.py [--prompts 32] [--max-new-tokens 48]
        [--batch-size 8] [--repeats 2] [--dtype auto]

SmolLM2-135M-Instruct answers real questions (GSM8K test and GPTeacher code instructions, used as
prompts only). ``generate_greedy`` (``instruct_select.evaluate.generation``: batches sorted by
length, left-padded, the key/value cache, stops at every end-of-turn token) is timed against the
reference: ``model.generate`` on the same prompts in the order given, batches of the same size,
the same greedy settings and stop tokens. Both produce the same tokens (checked: the decoded
answers must be equal); tokens/s counts each answer's new tokens up to its stop. The two run
interleaved, ``--repeats`` times; the best time of each is kept.
"""
from __future__ import annotations

import argparse
import os
import random
import time

import torch

from common import DATA_DIR
from instruct_select.data.loading import load_examples
from instruct_select.evaluate.generation import (
    _decode_until_eos, _greedy_config, _left_pad, _pad_id, generate_greedy, render_prompts, stop_token_ids,
)
from instruct_select.models.loading import load_base_model, load_tokenizer, resolve_dtype
from instruct_select.models.real import prepare_real_model


def prompts(n: int) -> list[list[dict]]:
    rng = random.Random("generation_speed")
    chosen = []
    for i, name in enumerate(("gsm8k_test.jsonl", "gpteacher_codegen.json")):
        examples = [e for e in load_examples(DATA_DIR / name).examples if len(e.messages[0]["content"]) <= 600]
        chosen += rng.sample(examples, n // 2 + (i < n % 2))
    return [[m for m in e.messages if m["role"] != "assistant"][:1] for e in chosen]


def plain_generate(model, tokenizer, encoded, max_new_tokens: int, batch_size: int) -> tuple[list[str], int]:
    """``model.generate`` on the prompts in the order given: (answers, new tokens up to each stop)."""
    stops = stop_token_ids(model, tokenizer)
    config = _greedy_config(max_new_tokens, stops, _pad_id(tokenizer, stops))
    answers, tokens = [], 0
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            ids, mask = _left_pad(encoded[start:start + batch_size], config.pad_token_id, model.device)
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            for row in out[:, ids.shape[1]:].tolist():
                answers.append(_decode_until_eos(tokenizer, row, stops))
                tokens += next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
    return answers, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    path = prepare_real_model("smollm2-135m")
    dtype = resolve_dtype(args.dtype, "cpu")
    model, tokenizer = load_base_model(path, dtype, "cpu").eval(), load_tokenizer(path)
    questions = prompts(args.prompts)
    encoded = render_prompts(tokenizer, questions)
    best = {"generate_greedy": float("inf"), "model.generate": float("inf")}
    for repeat in range(args.repeats):
        for name in (list(best) if repeat % 2 == 0 else list(best)[::-1]):
            start = time.perf_counter()
            if name == "generate_greedy":
                ours = generate_greedy(model, tokenizer, questions, args.max_new_tokens, args.batch_size)
            else:
                theirs, tokens = plain_generate(model, tokenizer, encoded, args.max_new_tokens, args.batch_size)
            best[name] = min(best[name], time.perf_counter() - start)
            print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
    if ours != theirs:
        raise SystemExit(f"the answers differ: {sum(a != b for a, b in zip(ours, theirs))} of {len(ours)}")
    rates = {name: tokens / seconds for name, seconds in best.items()}
    print(f"\nSmolLM2-135M-Instruct, {dtype}, {len(questions)} prompts, ≤ {args.max_new_tokens} new tokens "
          f"({tokens} generated), batches of {args.batch_size}, best of {args.repeats}; load average {load:.1f} "
          f"at the start, {os.getloadavg()[0]:.1f} at the end.\n\n| method | tokens/s | ratio |\n|---|---|---|")
    for name, value in rates.items():
        print(f"| {name} | {value:.1f} | {value / rates['model.generate']:.2f}× |")


if __name__ == "__main__":
    main()
