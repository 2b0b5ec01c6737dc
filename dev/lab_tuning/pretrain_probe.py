"""Pretraining-only probe: how much of the world does a base model learn for given specs?

    python dev/lab_tuning/pretrain_probe.py DATA_DIR '<json list of {size, ...spec overrides}>'
DATA_DIR holds corpus.txt and tok/ (from labexp.py). Prints fact recall by greedy continuation.
"""
import dataclasses, json, random, sys, time
from pathlib import Path
import torch
torch.set_num_threads(2)
from transformers import AutoTokenizer
from instruct_select.lab.build import read_corpus
from instruct_select.lab.pretrain import MODEL_SIZES, pretrain
from instruct_select.lab.world import WORDS

out = Path(sys.argv[1])
tok = AutoTokenizer.from_pretrained(str(out / "tok"))
docs = read_corpus(out / "corpus.txt")
text = "\n".join(docs)
# facts from the corpus itself: "X lives in Y." sentences
import re
facts = sorted(set(re.findall(r"(\b[A-Z][a-z]+) lives in ([A-Z][a-z]+)\.", text)))
colours = sorted(set(re.findall(r"(\b[A-Z][a-z]+)'s favourite colour is (\w+)\.", text)))
adds = sorted(set(re.findall(r"^(\d+) \+ (\d+) = (\d+)$", text, re.M)))
random.Random(0).shuffle(adds)
adds = adds[:80]
uppers = sorted(set(re.findall(r"The word (\w+) in capital letters is ([A-Z]+)\.", text)))


@torch.no_grad()
def complete(model, prompts, n=5):
    enc = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    outs = []
    for i in range(0, len(enc), 128):
        chunk = enc[i:i + 128]
        L = max(map(len, chunk))
        ids = torch.tensor([[tok.pad_token_id] * (L - len(c)) + [tok.bos_token_id] + c for c in chunk])
        att = torch.tensor([[0] * (L - len(c)) + [1] * (len(c) + 1) for c in chunk])
        g = model.generate(input_ids=ids, attention_mask=att, max_new_tokens=n, do_sample=False,
                           pad_token_id=tok.pad_token_id)
        outs += tok.batch_decode(g[:, L + 1:], skip_special_tokens=True)
    return outs


def acc(model, pairs, fmt):
    got = complete(model, [fmt.format(*p[:-1]) for p in pairs])
    return round(sum(g.strip().startswith(p[-1]) for p, g in zip(pairs, got)) / max(1, len(pairs)), 2)


for run in json.loads(sys.argv[2]):
    run = dict(run)
    size = run.pop("size")
    spec = dataclasses.replace(MODEL_SIZES[size], **run)
    t = time.time()
    model, info = pretrain(docs, tok, spec, 0, progress=False, log=lambda m: None)
    dt = time.time() - t
    print(size, run, "steps", info["steps"], "loss", round(info["final_loss"], 3), f"{dt:.0f}s",
          "city", acc(model, facts, "{} lives in"), "colour", acc(model, colours, "{}'s favourite colour is"),
          "add", acc(model, adds, "{} + {} ="), "upper", acc(model, uppers, "The word {} in capital letters is"),
          flush=True)
