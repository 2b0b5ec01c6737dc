"""The mixture benchmark's data: a Tulu-v2-like pool, and the BIDS paper's five capabilities as
targets (validation) and tests, written as ordinary files that ``instruct-select run`` reads.

**Pool** (``pool.jsonl``; each example's task is its source, so IDEAL's domains and the composition
tables are the sources). Tulu v2 is about a third FLAN/CoT, a third ShareGPT, and the rest
assorted instruction sets; ``MIXTURES["tulu"]`` mirrors that with the training-side files here:

| source | file | tulu | code_math |
|---|---|---|---|
| ``t0`` (FLAN-like NLP tasks; subtask = its template) | ``t0_sample.jsonl`` | 50% | 25% |
| ``gsm8k`` (chain-of-thought math) | ``gsm8k_train.jsonl`` | 15% | 30% |
| ``gpteacher`` (code) | ``gpteacher_codegen.json`` | 15% | 30% |
| ``sharegpt`` (chat) | ``sharegpt_dummy_conversation.json`` | 12% | 9% |
| ``self_instruct`` (the 175 human-written seed tasks, first instance) | ``self_instruct_seed_tasks.jsonl`` | 8% | 6% |

``code_math`` is the second mixture (issue 24 point 6): rankings of methods on small pools have
flipped between pools before. The Self-Instruct *user-oriented* set is not in the pool: it is the
instruction-following validation set's source (human reference outputs), and a target's own
examples in the pool would make that target trivially easy to find.

**Capabilities**, each with ``validation`` examples of equal count (a few, as LESS and BIDS use,
single-turn with reference responses) and a test set, disjoint from it:

| capability | validation | tests | metric |
|---|---|---|---|
| ``knowledge`` | MMLU val | MMLU test | multiple choice by log-likelihood (``acc_norm``) |
| ``reasoning`` | BBH (multiple-choice tasks) | other BBH examples | multiple choice by log-likelihood |
| ``math`` | GSM8K train held out of the pool | GSM8K test | final-answer accuracy (``number``) |
| ``coding`` | HumanEval (one part) | HumanEval (the other part) | pass@1, run in a sandbox |
| ``instruction`` | Self-Instruct user-oriented | IFEval (accuracy) + user-oriented held out (loss) | IFEval prompt-level strict |

MMLU, BBH, GSM8K test, HumanEval and IFEval are benchmark data: never in the pool (tested). A test
record carries what its metric needs beside its messages: ``checker`` = ``choice`` (with
``choices`` and ``answer``), ``ifeval`` (``instruction_id_list``, ``kwargs``), ``humaneval``
(``prompt``, ``test``, ``entry_point``), ``loss_only`` (held-out loss, no generation) or an answer
checker's name; ``has_reference: false`` marks an IFEval prompt, whose assistant turn is a
placeholder (IFEval has no reference answers) left out of the held-out loss.

BBH's multiple-choice tasks are scored on the options' text: a task whose inputs list ``Options:``
(A)...(F) offers those texts, a binary task (True/False, Yes/No, valid/invalid) its two answers.
Pool examples longer than ``max_chars`` are left out (about 4 characters a token: 1,000 characters
is about 250 tokens, the length the stage rates in ``mixture.py`` were measured at).
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..artifacts import atomic_write_text, fingerprint_path, run_stage
from ..errors import InputError
from .real_mixed import conversation, short_conversations, source_examples

CAPABILITIES = ("knowledge", "reasoning", "math", "coding", "instruction")
POOL_FILES = {"t0": "t0_sample.jsonl", "gsm8k": "gsm8k_train.jsonl", "gpteacher": "gpteacher_codegen.json",
              "sharegpt": "sharegpt_dummy_conversation.json", "self_instruct": "self_instruct_seed_tasks.jsonl"}
# Benchmark data and the instruction-following validation source: never in the pool.
HELD_FILES = ("mmlu_val.jsonl", "mmlu_test.jsonl", "gsm8k_test.jsonl", "humaneval.jsonl", "ifeval_input_data.jsonl",
              "self_instruct_user_oriented.jsonl")
MIXTURES = {
    "tulu": {"t0": 0.50, "gsm8k": 0.15, "gpteacher": 0.15, "sharegpt": 0.12, "self_instruct": 0.08},
    "code_math": {"t0": 0.25, "gsm8k": 0.30, "gpteacher": 0.30, "sharegpt": 0.09, "self_instruct": 0.06},
}
# BBH tasks whose answers are options (scored by log-likelihood); free-form ones are left out.
BBH_BINARY = {"boolean_expressions", "causal_judgement", "formal_fallacies", "navigate", "sports_understanding",
              "web_of_lies"}
BBH_OPTIONS = {"date_understanding", "disambiguation_qa", "hyperbaton", "logical_deduction_three_objects",
               "logical_deduction_five_objects", "penguins_in_a_table", "snarks", "temporal_sequences",
               "tracking_shuffled_objects_three_objects", "tracking_shuffled_objects_five_objects",
               "salient_translation_error_detection"}
CODE_INSTRUCTION = ("Complete the following Python function. Answer with the whole function in one ```python "
                    "code block.\n\n```python\n{prompt}```")
NO_REFERENCE = "(IFEval has no reference answer; its checks judge the response's form)"
# Greedy tokens per generated answer: GSM8K's worked answers and IFEval's responses fit in 192, a
# HumanEval answer that restates the function's prompt (as chat models do) needs more.
GENERATION_TOKENS = {"math": 192, "coding": 256, "instruction": 192}


@dataclass
class MixtureSizes:
    """Pool size and mixture; validation examples per capability (equal); tests per capability."""

    pool: int = 1000
    mixture: str = "tulu"
    validation: int = 10
    tests: dict[str, int] = field(default_factory=lambda: {"knowledge": 160, "reasoning": 80, "math": 32,
                                                           "coding": 32, "instruction": 64})
    loss_tests: int = 60  # user-oriented examples held out for the instruction capability's held-out loss
    max_chars: int = 1000
    max_eval_chars: int = 0  # > 0: validation and test records at most this long (the tiny test's speed)

    @classmethod
    def small(cls) -> "MixtureSizes":
        return cls(pool=200, validation=5, tests={"knowledge": 40, "reasoning": 20, "math": 8, "coding": 8,
                                                  "instruction": 12}, loss_tests=20)

    @classmethod
    def tiny(cls) -> "MixtureSizes":
        """For the end-to-end test: seconds on the test fixtures' tiny model."""
        return cls(pool=40, validation=2, tests={c: 3 for c in CAPABILITIES}, loss_tests=2, max_chars=400,
                   max_eval_chars=1400)

    def counts(self) -> dict[str, int]:
        """Pool examples per source: the mixture's shares of ``pool``, rounded, adding up to ``pool``."""
        shares = MIXTURES[self.mixture]
        counts = {source: int(self.pool * share) for source, share in shares.items()}
        for source in sorted(shares, key=lambda s: -(self.pool * shares[s] % 1))[:self.pool - sum(counts.values())]:
            counts[source] += 1
        return counts


def _jsonl(path: Path) -> list[dict]:
    # split("\n"), not splitlines(): records hold U+2028 and other characters splitlines() breaks at.
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _pool_source(data_dir: Path, source: str) -> list[tuple[list[dict], str | None]]:
    """(messages, subtask) of every example of a pool source, in file order."""
    path = data_dir / POOL_FILES[source]
    if source == "t0":
        return [(conversation(r["prompt"], r["completion"]), r["task"]) for r in _jsonl(path)
                if r["prompt"].strip() and r["completion"].strip()]
    if source == "self_instruct":
        rows = _jsonl(path)
        return [(conversation(_with_input(r["instruction"], r["instances"][0]["input"]), r["instances"][0]["output"]),
                 None) for r in rows if r["instances"] and r["instances"][0]["output"].strip()]
    task = {"gsm8k": "math", "gpteacher": "code", "sharegpt": "chat"}[source]
    return [(m, None) for m in source_examples(data_dir, task)]


def _with_input(instruction: str, given: str) -> str:
    return instruction + (f"\n\n{given}" if given.strip() else "")


def _choice_record(question: str, choices: list[str], answer: int, subtask: str) -> dict:
    return {"subtask": subtask, "checker": "choice", "choices": choices, "answer": answer,
            "messages": conversation(question, choices[answer])}


def _mmlu(path: Path) -> list[dict]:
    letters = "ABCD"
    return [_choice_record(r["question"].strip(), [c.strip() for c in r["choices"]], letters.index(r["answer"]),
                           r["subject"]) for r in _jsonl(path) if all(c.strip() for c in r["choices"])]


_OPTION = re.compile(r"^\(([A-R])\)\s*(.*)$")


def _bbh_record(task: str, row: dict) -> dict | None:
    text, target = row["input"], row["target"].strip()
    if task in BBH_OPTIONS:
        head, _, tail = text.partition("Options:")
        options = [m.groups() for m in (_OPTION.match(line.strip()) for line in tail.splitlines()) if m]
        letters = [letter for letter, _ in options]
        if not options or target.strip("()") not in letters:
            return None
        return _choice_record(text.strip(), [body.strip() for _, body in options],
                              letters.index(target.strip("()")), task)
    pairs = {"True": ["True", "False"], "False": ["True", "False"], "Yes": ["Yes", "No"], "No": ["Yes", "No"],
             "yes": ["yes", "no"], "no": ["yes", "no"], "valid": ["valid", "invalid"], "invalid": ["valid", "invalid"]}
    if target not in pairs:
        return None
    return _choice_record(text.strip(), pairs[target], pairs[target].index(target), task)


def _bbh(data_dir: Path) -> list[dict]:
    records = []
    for task in sorted(BBH_BINARY | BBH_OPTIONS):
        rows = json.loads((data_dir / "bbh" / f"{task}.json").read_text(encoding="utf-8"))["examples"]
        records += [r for r in (_bbh_record(task, row) for row in rows) if r is not None]
    return records


def _humaneval(record: dict) -> dict:
    answer = f"```python\n{record['prompt']}{record['canonical_solution']}```"
    return {"subtask": None, "checker": "humaneval", "prompt": record["prompt"], "test": record["test"],
            "entry_point": record["entry_point"], "task_id": record["task_id"],
            "messages": conversation(CODE_INSTRUCTION.format(prompt=record["prompt"]), answer)}


def _ifeval(record: dict) -> dict:
    return {"subtask": None, "checker": "ifeval", "has_reference": False, "key": record["key"],
            "instruction_id_list": record["instruction_id_list"], "kwargs": record["kwargs"],
            "messages": conversation(record["prompt"], NO_REFERENCE)}


def _user_oriented(record: dict, checker: str) -> dict:
    instance = record["instances"][0]
    return {"subtask": record["motivation_app"], "checker": checker,
            "messages": conversation(_with_input(record["instruction"], instance["input"]), instance["output"])}


def _take(rows: list, n: int, what: str, where: Path) -> tuple[list, list]:
    if len(rows) < n:
        raise InputError(f"{where}: {len(rows)} usable {what}, fewer than the {n} asked; ask for fewer")
    return rows[:n], rows[n:]


def _shuffled(rows: list, rng: random.Random, max_chars: int = 0) -> list:
    """``rows`` in a seeded order; with ``max_chars``, only the records whose messages fit."""
    rows = [r for r in rows if not max_chars or sum(len(m["content"]) for m in r["messages"]) <= max_chars]
    rng.shuffle(rows)
    return rows


def build_mixture(data_dir: str | Path, sizes: MixtureSizes, seed: int = 0) -> dict[str, dict[str, list[dict]]]:
    """{"pool": {source: records}, "validation": {capability: records}, "tests": {capability: records}};
    every draw is seeded from ``seed`` and the part's name, so the parts do not depend on each other."""
    data_dir = Path(data_dir)
    rng = lambda part: random.Random(f"mixture:{seed}:{part}")  # noqa: E731
    n_val, tests, cap = sizes.validation, sizes.tests, sizes.max_eval_chars
    parts: dict[str, dict[str, list[dict]]] = {"pool": {}, "validation": {}, "tests": {}}
    for source, n in sizes.counts().items():
        rows = [(m, sub) for m, sub in _pool_source(data_dir, source)
                if sum(len(t["content"]) for t in m) <= sizes.max_chars]
        rows = _shuffled(rows, rng(source))
        # GSM8K train also gives the math validation examples, held out of the pool: drawn first,
        # so that every mixture (whatever its GSM8K share) has the same validation and tests.
        held = n_val if source == "gsm8k" else 0
        chosen, _ = _take(rows, n + held, f"{source} examples of at most {sizes.max_chars} characters",
                          data_dir / POOL_FILES[source])
        parts["pool"][source] = [{"subtask": sub, "messages": m} for m, sub in chosen[held:]]
        if held:
            parts["validation"]["math"] = [{"subtask": None, "checker": "number", "messages": m}
                                           for m, _ in chosen[:held]]
    parts["validation"]["knowledge"], _ = _take(_shuffled(_mmlu(data_dir / "mmlu_val.jsonl"), rng("mmlu-val"), cap),
                                                n_val, "MMLU val questions", data_dir / "mmlu_val.jsonl")
    parts["tests"]["knowledge"], _ = _take(_shuffled(_mmlu(data_dir / "mmlu_test.jsonl"), rng("mmlu-test"), cap),
                                           tests["knowledge"], "MMLU test questions", data_dir / "mmlu_test.jsonl")
    bbh_val, bbh_rest = _take(_shuffled(_bbh(data_dir), rng("bbh"), cap), n_val, "BBH questions", data_dir / "bbh")
    parts["validation"]["reasoning"], parts["tests"]["reasoning"] = bbh_val, bbh_rest[:tests["reasoning"]]
    gsm8k_test = [{"subtask": None, "checker": "number", "messages": conversation(r["question"], r["answer"])}
                  for r in _jsonl(data_dir / "gsm8k_test.jsonl")]
    parts["tests"]["math"], _ = _take(_shuffled(gsm8k_test, rng("gsm8k-test"), cap), tests["math"], "GSM8K test problems",
                                      data_dir / "gsm8k_test.jsonl")
    humaneval = _shuffled([_humaneval(r) for r in _jsonl(data_dir / "humaneval.jsonl")], rng("humaneval"), cap)
    code_val, code_rest = _take(humaneval, n_val, "HumanEval problems", data_dir / "humaneval.jsonl")
    parts["validation"]["coding"], parts["tests"]["coding"] = code_val, code_rest[:tests["coding"]]
    user = [r for r in _jsonl(data_dir / "self_instruct_user_oriented.jsonl")
            if not cap or len(r["instruction"]) + len(r["instances"][0]["input"] + r["instances"][0]["output"]) <= cap]
    user = _shuffled(user, rng("user-oriented"))
    user_val, user_rest = _take(user, n_val + sizes.loss_tests, "user-oriented instructions",
                                data_dir / "self_instruct_user_oriented.jsonl")
    parts["validation"]["instruction"] = [_user_oriented(r, "contains") for r in user_val[:n_val]]
    ifeval = _shuffled([_ifeval(r) for r in _jsonl(data_dir / "ifeval_input_data.jsonl")], rng("ifeval"), cap)
    parts["tests"]["instruction"] = ifeval[:tests["instruction"]] + [
        _user_oriented(r, "loss_only") for r in user_val[n_val:]]
    for split in ("validation", "tests"):
        short = [c for c in CAPABILITIES if len(parts[split][c]) < (n_val if split == "validation" else 1)]
        if short or (split == "tests" and len(parts["tests"]["reasoning"]) < tests["reasoning"]):
            raise InputError(f"{data_dir}: not enough {split} examples for {short or ['reasoning']}; ask for fewer")
    return parts


def _record_lines(split: str, name: str, records: list[dict], task: str) -> str:
    lines = []
    for i, record in enumerate(records):
        row = {"id": f"{split}-{name}-{i}", "task": task, **{k: v for k, v in record.items() if v is not None}}
        if task in GENERATION_TOKENS and split == "tests":
            row["max_new_tokens"] = GENERATION_TOKENS[task]
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    return "".join(lines)


def write_mixture(data_dir: str | Path, out: Path, sizes: MixtureSizes, seed: int = 0) -> dict:
    """Write pool.jsonl, validation/CAPABILITY.jsonl and tests/CAPABILITY.jsonl into ``out``; returns counts."""
    parts = build_mixture(data_dir, sizes, seed)
    atomic_write_text(out / "pool.jsonl", "".join(
        _record_lines("pool", source, records, source) for source, records in parts["pool"].items()))
    for split in ("validation", "tests"):
        for capability, records in parts[split].items():
            atomic_write_text(out / split / f"{capability}.jsonl", _record_lines(split, capability, records, capability))
    return {split: {name: len(records) for name, records in per.items()} for split, per in parts.items()}


def mixture_data(data_dir: str | Path, out: Path, sizes: MixtureSizes) -> Path:
    """The benchmark's data in ``out`` (a cached stage: the same sizes and files reuse it). ``out``
    lies outside the run folder that reads it: a run never writes into its inputs."""
    names = [*POOL_FILES.values(), *HELD_FILES]
    inputs = {name: fingerprint_path(Path(data_dir) / name) for name in names}
    inputs["bbh"] = fingerprint_path(Path(data_dir) / "bbh")
    run_stage(out, "mixture-data", asdict(sizes), inputs, lambda folder: write_mixture(data_dir, folder, sizes))
    return Path(out)


LM_EVAL_TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_target: answer
doc_to_choice: choices
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def write_lm_eval_task(tests_file: str | Path, folder: str | Path, name: str = "mixture_knowledge") -> str:
    """An lm-evaluation-harness task over a choice test file (e.g. ``tests/knowledge.jsonl``), scored as
    this benchmark scores it: the question as the one user turn (run lm-eval with the chat template),
    each choice's text as the continuation, ``acc`` and ``acc_norm``. Writes ``folder/NAME.yaml`` and
    the items it reads; returns the task name (for ``--include-path folder``)."""
    folder = Path(folder)
    rows = []
    for line in Path(tests_file).read_text(encoding="utf-8").split("\n"):
        if line.strip():
            record = json.loads(line)
            question = next(m["content"] for m in reversed(record["messages"]) if m["role"] == "user")
            rows.append(json.dumps({"question": question, "choices": record["choices"], "answer": record["answer"]},
                                   ensure_ascii=False))
    data = folder / f"{name}.jsonl"
    atomic_write_text(data, "\n".join(rows) + "\n")
    atomic_write_text(folder / f"{name}.yaml", LM_EVAL_TASK.format(name=name, data=data))
    return name
