"""Multiple-choice scoring speed on SmolLM2-135M-Instruct: the shared prompt once with the key/value
cache and the options batched on it, against one full forward pass per option (issue 21 point 3).

    python benchmarks/mc_scoring.py [--questions 40] [--repeats 3] [--shots 0]

The questions are MMLU test items as the mixture benchmark scores them (the chat template, the
question as the user turn, each option's text as the assistant's answer; ``--shots`` adds that
many dev questions of the same subject as earlier turns, which lengthens the shared prompt), and
the same questions with the four letters as options (one token each: the prompt's last logits
answer them all). Both paths run in one process, interleaved, ``--repeats`` times; the table gives
questions/s of each and their ratio, and the largest difference between the two paths'
log-likelihoods (the tests require ≤ 1e-5).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, seconds  # noqa: E402


def _questions(tokenizer, n: int, shots: int, letters: bool):
    from instruct_select.evaluate.multiple_choice import encode_question

    read = lambda name: [json.loads(x) for x in (DATA_DIR / name).read_text().split("\n") if x.strip()]  # noqa: E731
    test, dev = read("mmlu_test.jsonl"), read("mmlu_dev.jsonl")
    rows = random.Random(0).sample(test, n)
    out = []
    for row in rows:
        turns = []
        for shot in [d for d in dev if d["subject"] == row["subject"]][:shots]:
            turns += [{"role": "user", "content": shot["question"]},
                      {"role": "assistant", "content": shot["choices"]["ABCD".index(shot["answer"])]}]
        question = row["question"] + ("\n" + "\n".join(f"{l}. {c}" for l, c in zip("ABCD", row["choices"]))
                                      if letters else "")
        turns.append({"role": "user", "content": question})
        context = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
        out.append(encode_question(tokenizer, context, list("ABCD") if letters else row["choices"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from instruct_select.evaluate.multiple_choice import score_questions
    from instruct_select.models.loading import load_base_model, load_tokenizer
    from instruct_select.models.real import prepare_real_model

    torch.set_num_threads(args.threads)
    folder = prepare_real_model("smollm2-135m")
    model, tokenizer = load_base_model(folder, dtype="float32", device="cpu"), load_tokenizer(folder)
    print(f"SmolLM2-135M-Instruct, float32, {args.threads} threads, {args.questions} MMLU test questions, "
          f"{args.shots}-shot, {args.repeats} interleaved repeats; load average {os.getloadavg()[0]:.2f}")
    print("| options | prompt tokens (mean) | option tokens (mean) | naive q/s | cached q/s | ratio (median) "
          "| max abs difference |")
    print("|---|---|---|---|---|---|---|")
    for letters in (False, True):
        questions = _questions(tokenizer, args.questions, args.shots, letters)
        score_questions(model, questions[:2])  # warm up
        fast_t, naive_t, ratios, diff = [], [], [], 0.0
        for _ in range(args.repeats):
            got: dict[str, list] = {}
            t_naive = seconds(lambda: got.__setitem__("naive", score_questions(model, questions, naive=True)))
            t_fast = seconds(lambda: got.__setitem__("fast", score_questions(model, questions)))
            naive_t.append(t_naive)
            fast_t.append(t_fast)
            ratios.append(t_naive / t_fast)
            diff = max(diff, max(abs(a - b) for q1, q2 in zip(got["fast"], got["naive"]) for a, b in zip(q1, q2)))
        prompt = statistics.mean(len(q.context_ids) for q in questions)
        option = statistics.mean(len(ids) for q in questions for ids in q.option_ids)
        print(f"| {'letters A-D' if letters else 'answer texts'} | {prompt:.0f} | {option:.1f} "
              f"| {args.questions / statistics.median(naive_t):.2f} | {args.questions / statistics.median(fast_t):.2f} "
              f"| {statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) | {diff:.1e} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
