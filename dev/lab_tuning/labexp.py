"""Lab tuning harness: data -> tokenizer -> pretrain (both sizes) -> base probes -> LoRA fine-tunes.

    python dev/lab_tuning/labexp.py NAME '<json>'

json keys (all optional):
  data:       LabDataConfig fields          difficulty: Difficulty fields
  spec:       LabModelSpec overrides for both sizes; spec_small / spec_large: per size
  train:      lab_train_settings overrides (lora: {r, alpha, target_modules})
  vocab:      tokenizer vocab size          sizes: ["small", "large"]
  small_ft:   also fine-tune the small model on the full pool (default true)
  warmup:     also time 4 epochs over the full pool on the large model (default false)
Writes everything to /tmp/exp/NAME and prints per-capability accuracy (base, random 15%, full).
"""
import copy, dataclasses, json, random, sys, time
from pathlib import Path

import torch
torch.set_num_threads(2)
from transformers import AutoTokenizer

from instruct_select.config import EvalSettings, LoraSettings
from instruct_select.data.loading import load_examples
from instruct_select.evaluate import evaluate_capabilities
from instruct_select.evaluate.generation import generate_greedy
from instruct_select.lab.build import pool_texts, read_corpus
from instruct_select.lab.capabilities import Difficulty
from instruct_select.lab.pool import LabDataConfig, write_lab_data, build_lab_data
from instruct_select.lab.pretrain import MODEL_SIZES, pretrain
from instruct_select.lab.presets import lab_train_settings
from instruct_select.lab.tokenizer import train_lab_tokenizer
from instruct_select.data.loading import load_test_sets
from instruct_select.train.loop import train_model

name = sys.argv[1]
cfg = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
out = Path("/tmp/exp") / name
if cfg.get("reuse"):  # same data and tokenizer as the reused experiment
    import shutil
    if not (out / "tok").exists():
        shutil.copytree(cfg["reuse"], out, dirs_exist_ok=True)
out.mkdir(parents=True, exist_ok=True)
T = {}
data_kw = dict(cfg.get("data", {}))
if "difficulty" in cfg:
    data_kw["difficulty"] = Difficulty(**cfg["difficulty"])
dcfg = LabDataConfig(**data_kw)
t = time.time()
summary = write_lab_data(out, dcfg, 0)  # same seed and config as a reused run: identical files
T["data"] = time.time() - t
t = time.time()
train_lab_tokenizer(read_corpus(out / "corpus.txt"), pool_texts(out / "pool.jsonl"),
                    cfg.get("vocab", 1024), out / "tok")
tok = AutoTokenizer.from_pretrained(str(out / "tok"))
T["tokenizer"] = time.time() - t
docs = read_corpus(out / "corpus.txt")
print(name, "corpus chars", summary["corpus"], "facts", summary["knowledge_facts"], flush=True)

train_over = dict(cfg.get("train", {}))
if "lora" in train_over:
    train_over["lora"] = LoraSettings(**{"dropout": 0.0, **train_over["lora"]})  # the lab's, not the papers' default

world = build_lab_data(dataclasses.replace(dcfg, pool_size=10, corpus_chars=10), 0).world
tests = load_test_sets(out / "test")
test_fact_keys = {e.record["keys"][0] for e in tests["knowledge"]}
PROBE = {"city": "{n} lives in", "colour": "{n}'s favourite colour is", "food": "{n} likes to eat",
         "job": "The job of {n} is", "age": "The age of {n} is", "species": "The species of {n} is"}


@torch.no_grad()
def complete(model, prompts, n=6):
    enc = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    outs = []
    for i in range(0, len(enc), 128):
        chunk = enc[i:i + 128]
        L = max(map(len, chunk))
        ids = torch.tensor([[tok.pad_token_id] * (L - len(c)) + c for c in chunk])
        att = (ids != tok.pad_token_id).long()
        g = model.generate(input_ids=torch.cat([torch.full((len(chunk), 1), tok.bos_token_id), ids], 1),
                           attention_mask=torch.cat([torch.ones(len(chunk), 1, dtype=torch.long), att], 1),
                           max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
        outs += tok.batch_decode(g[:, L + 1:], skip_special_tokens=True)
    return outs


def probe(model):
    """Greedy continuation of plain corpus-style statements (no chat format)."""
    res = {}
    facts = [(e.name, a, v) for e in world.entities for a, v in e.facts]
    got = complete(model, [PROBE[a].format(n=n) for n, a, v in facts])
    ok = [g.strip().rstrip(".").split(" ")[0 if a != "job" else -1] == v or g.strip().startswith(v + ".")
          for (n, a, v), g in zip(facts, got)]
    res["facts_all"] = round(sum(ok) / len(ok), 2)
    held = [o for (n, a, v), o in zip(facts, ok) if f"knowledge:{a}:{n}" in test_fact_keys]
    res["facts_test"] = round(sum(held) / max(1, len(held)), 2)
    for a in PROBE:
        sel = [o for (n, aa, v), o in zip(facts, ok) if aa == a]
        res["f_" + a] = round(sum(sel) / len(sel), 2)
    rng = random.Random(1)
    d = dcfg.difficulty
    pairs = [(rng.randint(0, d.max_operand), rng.randint(0, d.max_operand)) for _ in range(60)]
    got = complete(model, [f"{a} + {b} =" for a, b in pairs])
    res["add"] = round(sum(g.strip().split(" ")[0].split("\n")[0] == str(a + b) for (a, b), g in zip(pairs, got)) / 60, 2)
    from instruct_select.lab.world import WORDS
    ws = WORDS[:60]
    got = complete(model, [f"The word {w} in capital letters is" for w in ws], 8)
    res["upper"] = round(sum(g.strip().startswith(w.upper() + ".") for w, g in zip(ws, got)) / len(ws), 2)
    res["samples"] = [g for g in got[:3]]
    return res


def ev(model):
    t = time.time()
    r = evaluate_capabilities(model, tok, tests, EvalSettings(max_new_tokens=16, batch_size=128))
    scores = {c: round(v["score"], 2) for c, v in r["capabilities"].items()}
    subs = {c: {s: round(x["score"], 2) for s, x in v.get("by_subtask", {}).items()} for c, v in r["capabilities"].items()}
    return scores, round(r["summary"]["macro"], 3), subs, round(time.time() - t)


pool = load_examples(out / "pool.jsonl").examples
results = {"config": cfg, "summary": summary}
for size in cfg.get("sizes", ["small", "large"]):
    spec = dataclasses.replace(MODEL_SIZES[size], **cfg.get("spec", {}), **cfg.get("spec_" + size, {}))
    t = time.time()
    saved = Path(cfg["reuse"]) / f"model_{size}" if cfg.get("reuse") else out / f"model_{size}"
    if cfg.get("reuse") and saved.exists():  # skip pretraining: fine-tuning sweeps on a saved base
        from transformers import AutoModelForCausalLM
        model, facts = AutoModelForCausalLM.from_pretrained(str(saved)), {"reused": str(saved)}
    else:
        model, facts = pretrain(docs, tok, spec, 0, progress=False)
        model.save_pretrained(str(out / f"model_{size}"))
    T["pretrain_" + size] = time.time() - t
    print(name, size, spec, facts, f"{T['pretrain_' + size]:.0f}s", flush=True)
    print(name, size, "probe", probe(model), flush=True)
    base = ev(model)
    print(name, size, "base", base[0], base[1], base[2], flush=True)
    results[size] = {"spec": dataclasses.asdict(spec), "pretrain": facts, "base": base[:3]}
    runs = [("full", 1.0)] if size == "small" else [("rand15", 0.15), ("full", 1.0)]
    if size == "small" and not cfg.get("small_ft", True):
        runs = []
    for label, frac in runs:
        ex = pool if frac == 1 else random.Random(0).sample(pool, int(frac * len(pool)))
        t = time.time()
        r = train_model(copy.deepcopy(model), tok, ex, lab_train_settings(**train_over), None,
                        progress=False, log=lambda m: None)
        T[f"ft_{size}_{label}"] = time.time() - t
        s = ev(r.model)
        print(name, size, label, s[0], s[1], s[2], "loss", [round(x, 2) for x in r.epoch_losses],
              f"{T[f'ft_{size}_{label}']:.0f}s (eval {s[3]}s)", flush=True)
        results[size][label] = s[:3]
    if size == "large" and cfg.get("warmup"):
        t = time.time()
        train_model(copy.deepcopy(model), tok, pool, lab_train_settings(**{**train_over, "epochs": 4}),
                    None, progress=False, log=lambda m: None)
        T["warmup_large"] = time.time() - t
T["build_total"] = T["data"] + T["tokenizer"] + sum(v for k, v in T.items() if k.startswith("pretrain"))
results["timings"] = {k: round(v, 1) for k, v in T.items()}
print(name, "timings", results["timings"], flush=True)
(out / "results.json").write_text(json.dumps(results, indent=1))
