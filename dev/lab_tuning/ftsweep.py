"""Fine-tuning sweep on a saved base: python ftsweep.py EXP_DIR SIZE '<json list of train overrides>'

Each override may hold "frac" (share of the pool, default 1.0) besides lab_train_settings fields.
Prints test accuracy per capability, training-set accuracy on 200 clean examples, sample outputs.
"""
import copy, json, random, sys, time
from pathlib import Path
import torch
torch.set_num_threads(2)
from transformers import AutoModelForCausalLM, AutoTokenizer
from instruct_select.config import EvalSettings, LoraSettings
from instruct_select.data.loading import load_examples
from instruct_select.evaluate import evaluate_capabilities
from instruct_select.lab.presets import lab_train_settings
from instruct_select.data.loading import load_test_sets
from instruct_select.train.loop import train_model

exp, size = Path(sys.argv[1]), sys.argv[2]
tok = AutoTokenizer.from_pretrained(str(exp / "tok"))
from instruct_select.lab.tokenizer import CHAT_TEMPLATE
tok.chat_template = CHAT_TEMPLATE  # the current template, whatever the saved one
base = AutoModelForCausalLM.from_pretrained(str(exp / f"model_{size}"))
pool = load_examples(exp / "pool.jsonl").examples
tests = load_test_sets(exp / "test")
clean = [e for e in pool if e.record.get("defect") is None]
train_sets = {}
for e in random.Random(1).sample(clean, 400):
    train_sets.setdefault(e.task, []).append(e)


def ev(model, sets, samples=False):
    r = evaluate_capabilities(model, tok, sets, EvalSettings(max_new_tokens=16, batch_size=128))
    if samples:
        for c, v in r["samples"].items():
            print("   ", c, [(s["reference"], s["response"]) for s in v[:4]])
    return {c: round(v["score"], 2) for c, v in r["capabilities"].items()}, round(r["summary"]["macro"], 3)


for over in json.loads(sys.argv[3]):
    over = dict(over)
    frac = over.pop("frac", 1.0)
    if "lora" in over:
        over["lora"] = LoraSettings(**{"dropout": 0.0, **over["lora"]})  # the lab's, not the papers' default
    ex = pool if frac == 1 else random.Random(0).sample(pool, int(frac * len(pool)))
    t = time.time()
    r = train_model(copy.deepcopy(base), tok, ex, lab_train_settings(**over), None, progress=False,
                    log=lambda m: None)
    dt = time.time() - t
    print(size, frac, over, "steps", r.steps, "loss", [round(x, 2) for x in r.epoch_losses], f"{dt:.0f}s", flush=True)
    print("   test", *ev(r.model, tests, samples=True), flush=True)
    print("   train", *ev(r.model, train_sets), flush=True)
