"""What several benchmarks share: real pool examples, a small random Llama, timing, peak memory.

Peak memory is measured in the process itself, exactly rather than sampled: glibc gives freed
memory back to the kernel (``malloc_trim``), the kernel's high-water mark of resident memory is
reset (``/proc/self/clear_refs``), the phase runs, and the new high-water mark minus the resident
memory at its start is the phase's own peak (what it allocated on top of the loaded model).
"""
from __future__ import annotations

import ctypes
import random
import time
from pathlib import Path

from instruct_select.data.example import Example
from instruct_select.data.loading import load_examples

# Training-side files only (the data README): the GSM8K test split and BBH are benchmark data.
TRAINING_SIDE = ("gsm8k_train.jsonl", "gpteacher_codegen.json")
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def training_side_examples(data_dir: str | Path = DATA_DIR) -> list[Example]:
    return [e for name in TRAINING_SIDE for e in load_examples(Path(data_dir) / name).examples]


def real_examples(n: int, data_dir: str | Path = DATA_DIR, seed: int = 0) -> list[Example]:
    """``n`` pool examples, half GSM8K train and half GPTeacher code, a seeded sample of each."""
    rng = random.Random(f"benchmark:{seed}")
    chosen: list[Example] = []
    for i, name in enumerate(TRAINING_SIDE):
        examples = load_examples(Path(data_dir) / name).examples
        chosen.extend(rng.sample(examples, n // len(TRAINING_SIDE) + (i < n % len(TRAINING_SIDE))))
    return chosen


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def resident_mib() -> float:
    """Resident memory after glibc has handed what it holds free back to the kernel."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return _status_mib("VmRSS")


def peak_mib(fn) -> float:
    """Peak resident memory (MiB) ``fn`` adds to what the process holds when it starts."""
    before = resident_mib()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident size
    fn()
    return _status_mib("VmHWM") - before


def small_llama(folder: Path, examples: list[Example], hidden: int = 192, layers: int = 6, heads: int = 4,
                vocab: int = 1024) -> Path:
    """A random-weight Llama (3.7M parameters at the defaults, tied embeddings, SwiGLU 4×hidden)
    with a byte-level BPE tokenizer trained on ``examples``, saved where ``from_pretrained`` reads it.
    The weights are random: only the shapes matter for speed."""
    import torch
    from transformers import LlamaForCausalLM

    from instruct_select.lab.pretrain import LabModelSpec
    from instruct_select.lab.tokenizer import train_lab_tokenizer

    texts = ["\n".join(m["content"] for m in e.messages) for e in examples]
    tokenizer = train_lab_tokenizer([], texts, vocab, folder)
    torch.manual_seed(0)
    config = LabModelSpec(hidden=hidden, layers=layers, heads=heads).config(tokenizer, max_positions=2048)
    LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder
