"""Tests for per-capability evaluation: checkers, summaries, batched greedy generation, scoring,
and the held-out loss of the reference answers.

Generation runs a tiny random Llama and a word-level tokenizer built here, saved with
save_pretrained and loaded back with from_pretrained, and is checked against a slow obvious
reference: one prompt at a time, no padding, no cache, argmax of the full forward pass. The
held-out loss is checked the same way: one unpadded example at a time, the answer's tokens found
by rendering the prompt and the whole conversation, the cross-entropy summed by hand.
"""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from instruct_select.cli import main
from instruct_select.config import EvalSettings
from instruct_select.data.batching import Batching
from instruct_select.data.chat import IGNORE_INDEX
from instruct_select.data.example import Example
from instruct_select.errors import ConfigError, InputError
from instruct_select.evaluate import CHECKERS, evaluate_capabilities, generate_greedy, heldout_losses, summarise
from instruct_select.evaluate import capabilities as capabilities_module
from instruct_select.evaluate.capabilities import split_example, write_metrics
from instruct_select.evaluate.heldout_loss import reference_item
from instruct_select.evaluate.checkers import get_checker
from instruct_select.evaluate.generation import _decode_until_eos, render_prompts

SPECIALS = ["<|bos|>", "<|end|>", "<|pad|>", "<|user|>", "<|assistant|>", "<|system|>", "<|unk|>"]
WORDS = (
    "the a cat dog sat on mat what is one two three four five yes no answer red blue green "
    "big small it was and"
).split()
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
PROMPTS = [  # lengths deliberately unsorted, one multi-turn, one with a system turn
    [{"role": "user", "content": "what is the cat"}],
    [{"role": "user", "content": "one"}],
    [{"role": "system", "content": "yes no"},
     {"role": "user", "content": "the big red dog sat on the small blue mat and it was green"}],
    [{"role": "user", "content": "two three"}],
    [{"role": "user", "content": "a cat"}, {"role": "assistant", "content": "yes"},
     {"role": "user", "content": "what is it"}],
    [{"role": "user", "content": "four five the answer is no"}],
    [{"role": "user", "content": "dog"}],
]


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, tokenizer) loaded back from disk through the Auto classes."""
    root = tmp_path_factory.mktemp("tiny")
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|unk|>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(SPECIALS)
    # A post-processor that prepends BOS: tokenising the rendered template with special tokens
    # on would then give two BOS, which test_render_prompts_has_one_bos catches.
    backend.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", special_tokens=[("<|bos|>", vocab["<|bos|>"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|bos|>", eos_token="<|end|>", pad_token="<|pad|>",
        unk_token="<|unk|>", additional_special_tokens=["<|user|>", "<|assistant|>", "<|system|>"],
    )
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(root / "tok")

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
        # Large initial weights give peaked logits, so argmax is decided by the computation
        # rather than by float rounding, and a padding bug shows as different tokens.
        initializer_range=0.5,
        bos_token_id=vocab["<|bos|>"], eos_token_id=vocab["<|end|>"], pad_token_id=vocab["<|pad|>"],
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # a louder eos: some prompts stop early, others run to the limit
        model.lm_head.weight[config.eos_token_id] *= 4.0
    model.save_pretrained(root / "model")
    model = AutoModelForCausalLM.from_pretrained(root / "model", dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(root / "tok")


def reference_greedy(model, tokenizer, messages, max_new_tokens):
    """Slow obvious greedy decoding: one prompt, no padding, no cache, full forward each step."""
    ids = render_prompts(tokenizer, [messages])[0]
    new = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(torch.tensor([ids + new])).logits[0, -1]
            token = int(logits.argmax())
            if token == tokenizer.eos_token_id:
                break
            new.append(token)
    return tokenizer.decode(new, skip_special_tokens=True), len(new)


# ----------------------------------------------------------------------------- checkers

@pytest.mark.parametrize("name, response, reference, expected", [
    ("exact", "  42 \n", "42", True),
    ("exact", "Paris", "paris", False),
    ("exact", "new  york", "new york", False),
    ("exact_ci", "  The   Cat\n sat ", "the cat sat", True),
    ("exact_ci", "the cats", "the cat", False),
    ("number", "The answer is 1,234.", "so 1000 + 234 = 1234\n#### 1234", True),
    ("number", "It is -5 degrees", "#### -5", True),
    ("number", "It is 5 degrees", "#### -5", False),
    ("number", "72.0", "48 / 2 = 24 and 24 + 48 = 72 #### 72", True),
    ("number", "$0.50", "#### .5", True),
    ("number", "I don't know", "#### 3", False),
    ("number", "3", "no number here", False),
    ("number", "first 3, then 72", "#### 72", True),  # the final answer counts, not the first number
    ("number", "72, since 3 + 69", "#### 72", False),  # ... so a trailing working is the answer
    ("number", "The answer is 72. I checked 3 ways.", "#### 72", True),
    ("number", "so x = \\boxed{18}, after 2 steps", "#### 18", True),
    ("number", "24 + 48 = 72\n#### 72\n", "#### 72", True),
    ("number", "1,2,3", "#### 123", False),  # a list is not a thousands-separated number
    ("number", "12,345,678 apples", "#### 12345678", True),
    ("contains", "Well, the answer is PARIS.", "paris", True),
    ("contains", "It is New\n  York city", "new york", True),
    ("contains", "Lyon", "Paris", False),
    ("contains", "anything at all", "   ", False),  # an empty reference must not pass
])
def test_checkers_golden(name, response, reference, expected):
    assert CHECKERS[name](response, reference) is expected


def test_number_reads_the_final_answer_of_gsm8k_worked_answers():
    """Real worked answers: each GSM8K test answer, given as the response, matches its own
    reference; the same answer with its final number changed does not; a chain of thought that
    ends in "The answer is N." matches."""
    import json

    from conftest import SHARED

    path = SHARED / "data" / "real" / "gsm8k_test.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is not here (it comes with ../shared)")
    from instruct_select.evaluate.checkers import parse_numbers

    rows = [json.loads(line) for line in path.read_text().splitlines()[:200]]
    checker = CHECKERS["number"]
    first_number_differs = 0
    for row in rows:
        answer = row["answer"]
        worked, final = answer.rsplit("####", 1)
        assert checker(answer, answer)
        assert checker(f"{worked.strip()} The answer is {final.strip()}.", answer)
        wrong = parse_numbers(final)[0] + 1
        assert not checker(f"{worked.strip()} The answer is {wrong}.", answer)
        first_number_differs += parse_numbers(answer)[0] != parse_numbers(final)[0]
    assert first_number_differs > 150  # what a first-number rule would have marked wrong


def test_unknown_checker_names_the_known_ones():
    with pytest.raises(ConfigError) as info:
        get_checker("fuzzy")
    assert "fuzzy" in str(info.value)
    for known in ("exact", "exact_ci", "number", "contains"):
        assert known in str(info.value)


# ----------------------------------------------------------------------------- summarise

def test_summarise_hand_computed():
    summary = summarise({"math": 1.0, "code": 0.5, "chat": 0.0})
    assert summary["macro"] == pytest.approx(0.5)
    assert summary["worst"] == 0.0 and summary["worst_capability"] == "chat"
    assert summary["spread"] == pytest.approx(math.sqrt(1 / 6))  # ((.5)^2 + 0 + (.5)^2) / 3
    assert summary["n_capabilities"] == 3


def test_summarise_spread_is_population_std_and_ties_are_deterministic():
    summary = summarise({"y": 0.4, "x": 0.8})
    assert summary["spread"] == pytest.approx(0.2)  # the sample std (ddof=1) would be 0.283
    assert summarise({"b": 0.2, "a": 0.2, "c": 0.9})["worst_capability"] == "a"
    with pytest.raises(InputError):
        summarise({})


# ----------------------------------------------------------------------------- generation

def test_render_prompts_has_one_bos(tiny):
    _, tokenizer = tiny
    ids = render_prompts(tokenizer, [PROMPTS[0]])[0]
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<|assistant|>")


def test_batched_generation_matches_one_at_a_time_and_the_slow_reference(tiny):
    model, tokenizer = tiny
    expected = [reference_greedy(model, tokenizer, p, 8) for p in PROMPTS]
    # The comparison only has teeth if the outputs differ between prompts and some stop at eos.
    assert len({text for text, _ in expected}) > 3
    assert any(n < 8 for _, n in expected) and any(n == 8 for _, n in expected)
    batched = generate_greedy(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=4)
    single = [generate_greedy(model, tokenizer, [p], max_new_tokens=8, batch_size=1)[0] for p in PROMPTS]
    assert batched == single == [text for text, _ in expected]


def test_generation_ignores_the_checkpoints_generation_defaults(tiny):
    model, tokenizer = tiny
    clean = generate_greedy(model, tokenizer, PROMPTS, max_new_tokens=8)
    saved = model.generation_config
    hostile = saved.__class__(do_sample=True, temperature=5.0, top_k=3, repetition_penalty=50.0,
                              no_repeat_ngram_size=1, min_new_tokens=8)
    model.generation_config = hostile
    model.train()
    try:
        torch.manual_seed(123)
        assert generate_greedy(model, tokenizer, PROMPTS, max_new_tokens=8) == clean
        assert model.generation_config is hostile  # put back after the call
        assert model.training  # and the training mode too
    finally:
        model.generation_config = saved
        model.eval()


def test_peft_wrapped_model_generates_like_its_base(tiny):
    peft = pytest.importorskip("peft")
    model, tokenizer = tiny
    clean = generate_greedy(model, tokenizer, PROMPTS, max_new_tokens=8)
    base = copy.deepcopy(model)  # LoRA injection edits the model in place
    base.generation_config.repetition_penalty = 50.0  # read through the wrapper by generate
    base.generation_config.no_repeat_ngram_size = 1
    # LoRA's B starts at zero, so the wrapped model computes exactly what the base does.
    wrapped = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert generate_greedy(wrapped, tokenizer, PROMPTS, max_new_tokens=8) == clean


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_generation_on_cuda_matches_one_at_a_time(tiny):
    cpu_model, tokenizer = tiny
    model = copy.deepcopy(cpu_model).to("cuda")
    batched = generate_greedy(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=4)
    single = [generate_greedy(model, tokenizer, [p], max_new_tokens=8, batch_size=1)[0] for p in PROMPTS]
    assert batched == single
    assert batched == generate_greedy(cpu_model, tokenizer, PROMPTS, max_new_tokens=8)


def test_generation_edge_cases(tiny):
    model, tokenizer = tiny
    assert generate_greedy(model, tokenizer, []) == []
    with pytest.raises(InputError, match="prompt 1"):
        generate_greedy(model, tokenizer, [PROMPTS[0], [{"role": "assistant", "content": "no"}]])
    with pytest.raises(ConfigError):
        generate_greedy(model, tokenizer, PROMPTS, batch_size=0)
    words = tokenizer.convert_tokens_to_ids(["cat", "sat", "<|end|>", "dog"])
    assert _decode_until_eos(tokenizer, words, tokenizer.eos_token_id) == "cat sat"


# ----------------------------------------------------------------------------- capabilities

def qa(id_, question, answer, subtask=None, checker=None):
    record = {"checker": checker} if checker else None
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return Example(id=id_, task=None, messages=messages, subtask=subtask, record=record)


TEST_SETS = {
    "math": [
        qa("m1", "two plus two", "#### 4", subtask="add", checker="number"),
        qa("m2", "ten times ten", "#### 100", subtask="mul", checker="number"),
        qa("m3", "one minus five", "#### -4", subtask="add", checker="number"),
    ],
    "chat": [qa("c1", "say yes", "yes"), qa("c2", "say no", "no")],
}


def stub_losses(monkeypatch, loss_for=lambda example: 1.0):
    """Replace the loss pass (it needs a real model) with ``loss_for(example)`` per example."""
    calls = []

    def fake(model, tokenizer, examples, batching):
        calls.append([e.id for e in examples])
        return [loss_for(e) for e in examples], [False] * len(examples)

    monkeypatch.setattr(capabilities_module, "heldout_losses", fake)
    return calls


def stub_generator(answer_for):
    """A generate_greedy stand-in answering each prompt by its last user turn."""
    calls = []

    def fake(model, tokenizer, prompts, max_new_tokens=32, batch_size=64):
        calls.append(prompts)
        return [answer_for(p[-1]["content"]) for p in prompts]

    return fake, calls


def test_scores_full_marks_for_references_and_zero_for_wrong_answers(monkeypatch):
    references = {e.messages[0]["content"]: e.messages[-1]["content"]
                  for examples in TEST_SETS.values() for e in examples}
    fake, calls = stub_generator(references.__getitem__)
    monkeypatch.setattr(capabilities_module, "generate_greedy", fake)
    stub_losses(monkeypatch)
    metrics = evaluate_capabilities(None, None, TEST_SETS)
    assert len(calls) == 1 and len(calls[0]) == 5  # one pass over every capability
    assert metrics["capabilities"]["math"] == {
        "score": 1.0, "n": 3, "correct": 3, "stderr": 0.0, "metric": "accuracy",
        "by_subtask": {"add": {"score": 1.0, "n": 2, "correct": 2, "stderr": 0.0},
                       "mul": {"score": 1.0, "n": 1, "correct": 1, "stderr": 0.0}},
    }
    assert metrics["capabilities"]["chat"]["n"] == 2
    assert metrics["summary"]["macro"] == 1.0 and metrics["summary"]["spread"] == 0.0

    fake, _ = stub_generator(lambda question: "wrong 7")
    monkeypatch.setattr(capabilities_module, "generate_greedy", fake)
    metrics = evaluate_capabilities(None, None, TEST_SETS)
    assert metrics["capabilities"]["math"]["correct"] == 0
    assert metrics["capabilities"]["chat"]["score"] == 0.0
    assert metrics["summary"]["macro"] == 0.0


def test_per_example_checkers_and_mixed_scores(monkeypatch):
    answers = {"two plus two": "The answer is 4.", "ten times ten": "1,000",
               "one minus five": "-4", "say yes": "yes", "say no": " no thanks "}
    fake, _ = stub_generator(answers.__getitem__)
    monkeypatch.setattr(capabilities_module, "generate_greedy", fake)
    stub_losses(monkeypatch)
    metrics = evaluate_capabilities(None, None, TEST_SETS, EvalSettings(default_checker="exact"))
    math_result, chat_result = metrics["capabilities"]["math"], metrics["capabilities"]["chat"]
    assert (math_result["correct"], math_result["n"]) == (2, 3)  # "number" from each record
    assert math_result["by_subtask"]["mul"]["score"] == 0.0
    assert chat_result["score"] == 0.5  # "exact" by default: " no thanks " is wrong
    assert metrics["summary"]["worst_capability"] == "chat"
    assert metrics["summary"]["macro"] == pytest.approx((2 / 3 + 0.5) / 2)
    sample = metrics["samples"]["math"][0]
    assert sample == {"id": "m1", "prompt": [{"role": "user", "content": "two plus two"}],
                      "reference": "#### 4", "response": "The answer is 4.", "correct": True}
    lenient = evaluate_capabilities(None, None, {"chat": TEST_SETS["chat"]},
                                    EvalSettings(default_checker="contains"))
    assert lenient["capabilities"]["chat"]["score"] == 1.0


def test_prompt_stops_before_the_last_assistant_turn():
    example = Example(id="x", task="chat", messages=[
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"}])
    prompt, reference = split_example(example, "chat")
    assert [m["content"] for m in prompt] == ["be brief", "a", "b", "c"] and reference == "d"
    no_answer = Example(id="q7", task=None, messages=[{"role": "user", "content": "a"}])
    with pytest.raises(InputError, match="q7"):
        split_example(no_answer, "chat")


def test_bad_test_sets_fail_before_generating(monkeypatch):
    fake, calls = stub_generator(lambda q: "")
    monkeypatch.setattr(capabilities_module, "generate_greedy", fake)
    loss_calls = stub_losses(monkeypatch)
    with pytest.raises(InputError, match="'code'"):
        evaluate_capabilities(None, None, {"chat": TEST_SETS["chat"], "code": []})
    with pytest.raises(ConfigError, match="regex"):
        evaluate_capabilities(None, None, {"chat": [qa("c9", "hi", "hi", checker="regex")]})
    with pytest.raises(ConfigError):
        evaluate_capabilities(None, None, TEST_SETS, EvalSettings(default_checker="nope"))
    assert calls == [] and loss_calls == []


def test_end_to_end_with_a_real_model_and_atomic_metrics(tiny, tmp_path):
    model, tokenizer = tiny
    sets = {"first": [qa(f"f{i}", p[-1]["content"], "yes") for i, p in enumerate(PROMPTS[:4])],
            "second": [qa(f"s{i}", p[-1]["content"], "no") for i, p in enumerate(PROMPTS[4:])]}
    metrics = evaluate_capabilities(model, tokenizer, sets, EvalSettings(max_new_tokens=6, batch_size=2))
    prompts = [[{"role": "user", "content": e.messages[0]["content"]}]
               for examples in sets.values() for e in examples]
    direct = generate_greedy(model, tokenizer, prompts, max_new_tokens=6)
    got = [s["response"] for cap in sets for s in metrics["samples"][cap]]
    assert got == direct
    assert [metrics["capabilities"][c]["n"] for c in sets] == [4, 3]
    for capability, examples in sets.items():  # the loss pass ran on the same model, in one go
        by_hand = [reference_loss(model, tokenizer, e.messages) for e in examples]
        assert metrics["heldout_loss"]["capabilities"][capability]["mean"] == pytest.approx(
            sum(by_hand) / len(by_hand), rel=1e-5)

    written = write_metrics(metrics, tmp_path)
    assert written == tmp_path / "metrics.json"
    assert json.loads(written.read_text()) == json.loads(json.dumps(metrics))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temp file left


# ----------------------------------------------------------------------------- held-out loss

LOSS_EXAMPLES = [  # lengths deliberately unsorted; one multi-turn, one with a system turn
    qa("l0", "what is the cat", "the cat sat on the mat"),
    qa("l1", "one", "two"),
    Example(id="l2", task=None, messages=[
        {"role": "system", "content": "yes no"},
        {"role": "user", "content": "the big red dog sat on the small blue mat and it was green"},
        {"role": "assistant", "content": "it was a dog"}]),
    Example(id="l3", task=None, messages=[
        {"role": "user", "content": "a cat"}, {"role": "assistant", "content": "yes"},
        {"role": "user", "content": "what is it"}, {"role": "assistant", "content": "a small cat"}]),
    qa("l4", "four five", "the answer is no no no yes"),
    qa("l5", "dog", "big dog"),
]


def reference_loss(model, tokenizer, messages):
    """Slow obvious loss of the last assistant turn: one unpadded example, the answer's tokens found
    by rendering the prompt and the whole conversation, the cross-entropy summed by hand."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    prompt = tokenizer.apply_chat_template(messages[:last], tokenize=False, add_generation_prompt=True)
    whole = tokenizer.apply_chat_template(messages[:last + 1], tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(whole, add_special_tokens=False)["input_ids"]
    assert ids[:len(prompt_ids)] == prompt_ids and len(ids) > len(prompt_ids)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
    terms = [-float(log_probs[t - 1, ids[t]]) for t in range(len(prompt_ids), len(ids))]
    return sum(terms) / len(terms)


def labelled(item):
    return [t for t in item.labels if t != IGNORE_INDEX]


@pytest.mark.parametrize("max_batch_size", [8, 3, 1])
def test_batched_heldout_loss_matches_one_example_at_a_time_by_hand(tiny, max_batch_size):
    model, tokenizer = tiny
    batching = Batching(max_length=256, token_budget=4096, max_batch_size=max_batch_size)
    losses, truncated = heldout_losses(model, tokenizer, LOSS_EXAMPLES, batching)
    expected = [reference_loss(model, tokenizer, e.messages) for e in LOSS_EXAMPLES]
    assert len({round(x, 4) for x in expected}) == len(expected)  # distinct: a mix-up would show
    assert truncated == [False] * len(LOSS_EXAMPLES)
    assert losses == pytest.approx(expected, rel=1e-5)
    # The comparison has teeth only if batches hold examples of different lengths (padding).
    lengths = {len(reference_item(tokenizer, e, 256)) for e in LOSS_EXAMPLES}
    assert len(lengths) > 3


def test_loss_pass_leaves_the_models_mode_as_it_was(tiny):
    model, tokenizer = tiny
    batching = Batching(max_length=256, token_budget=4096, max_batch_size=8)
    model.train()
    try:
        losses, _ = heldout_losses(model, tokenizer, LOSS_EXAMPLES[:2], batching)
        assert model.training
    finally:
        model.eval()
    assert losses == pytest.approx([reference_loss(model, tokenizer, e.messages) for e in LOSS_EXAMPLES[:2]],
                                   rel=1e-5)


def test_the_mask_covers_exactly_the_reference_answer(tiny):
    _, tokenizer = tiny
    item = reference_item(tokenizer, LOSS_EXAMPLES[3], 256)  # multi-turn: "yes" is a demonstration
    answer = tokenizer.convert_tokens_to_ids(["a", "small", "cat", "<|end|>"])
    assert labelled(item) == answer
    n = len(answer)  # the answer is the rendered conversation's tail; everything before is context
    assert list(item.input_ids[-n:]) == list(item.labels[-n:]) == answer
    assert all(t == IGNORE_INDEX for t in item.labels[:-n])


class NoisyOutsideTheAnswer(torch.nn.Module):
    """The tiny model with every logit that does not predict an answer token (prompt positions,
    and the last real token, which predicts padding) replaced by loud noise."""

    def __init__(self, model, assistant_id):
        super().__init__()
        self.model, self.assistant_id = model, assistant_id

    def forward(self, input_ids, attention_mask):
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits.clone()
        noise = 100 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))
        for row in range(len(input_ids)):
            start = int((input_ids[row] == self.assistant_id).nonzero().max())  # predicts the first answer token
            end = int(attention_mask[row].sum()) - 1
            outside = torch.ones(logits.shape[1], dtype=torch.bool)
            outside[start:end] = False
            logits[row, outside] = noise[row, outside]
        return type("Output", (), {"logits": logits})


def test_only_answer_tokens_count_and_the_prompt_acts_through_conditioning(tiny):
    model, tokenizer = tiny
    pair = [qa("p1", "what is the cat", "the dog sat"), qa("p2", "two three four five big", "the dog sat")]
    batching = Batching(max_length=256, token_budget=4096, max_batch_size=8)
    items = [reference_item(tokenizer, e, 256) for e in pair]
    assert labelled(items[0]) == labelled(items[1]) and len(items[0]) != len(items[1])
    losses, _ = heldout_losses(model, tokenizer, pair, batching)
    # Same answer tokens, different losses: the user turn changes only what the answer is conditioned on.
    assert abs(losses[0] - losses[1]) > 1e-3
    assert losses == pytest.approx([reference_loss(model, tokenizer, e.messages) for e in pair], rel=1e-5)
    noisy = NoisyOutsideTheAnswer(model, tokenizer.convert_tokens_to_ids("<|assistant|>"))
    scrambled, _ = heldout_losses(noisy, tokenizer, pair + LOSS_EXAMPLES, batching)
    clean, _ = heldout_losses(model, tokenizer, pair + LOSS_EXAMPLES, batching)
    assert scrambled == pytest.approx(clean, rel=1e-6)


def test_loss_summary_worst_is_the_highest_loss(monkeypatch):
    fake, _ = stub_generator(lambda question: "wrong 7")
    monkeypatch.setattr(capabilities_module, "generate_greedy", fake)
    losses = {"m1": 1.0, "m2": 4.0, "m3": 2.0, "c1": 0.5, "c2": 1.5}
    stub_losses(monkeypatch, lambda example: losses[example.id])
    metrics = evaluate_capabilities(None, None, TEST_SETS)
    loss = metrics["heldout_loss"]
    assert loss["capabilities"]["math"] == {
        "mean": pytest.approx(7 / 3), "n": 3, "truncated": 0, "excluded_no_answer_token": [],
        "stderr": pytest.approx((42 / 9 / 2 / 3) ** 0.5),  # sample std / sqrt(n) of 1, 4, 2
        "by_subtask": {"add": {"mean": 1.5, "n": 2, "stderr": 0.5}, "mul": {"mean": 4.0, "n": 1, "stderr": 0.0}},
    }
    assert loss["capabilities"]["chat"]["mean"] == 1.0 and loss["capabilities"]["chat"]["by_subtask"] == {}
    assert loss["summary"]["worst_capability"] == "math" and loss["summary"]["worst"] == pytest.approx(7 / 3)
    assert loss["summary"]["macro"] == pytest.approx(5 / 3) and loss["summary"]["spread"] == pytest.approx(2 / 3)
    # Accuracy keeps its own sense of worst: both are 0, the tie goes alphabetically to chat.
    assert metrics["summary"]["worst_capability"] == "chat"
    ties = summarise({"b": 2.0, "a": 2.0, "c": 0.1}, higher_is_better=False)
    assert (ties["worst_capability"], ties["worst"]) == ("a", 2.0)


def test_examples_without_an_answer_token_are_counted_not_dropped(tiny, monkeypatch):
    model, tokenizer = tiny
    fake, calls = stub_generator(lambda question: "yes")
    monkeypatch.setattr(capabilities_module, "generate_greedy", fake)
    long_question = " ".join(["the big red dog sat on the mat"] * 3)
    sets = {"chat": [qa("short", "say yes", "yes"), qa("long", long_question, "no")],
            "math": [qa("m", "one", "two three"), qa("partial", "a b c d", "one two three four five")]}
    settings = EvalSettings(max_length=12, loss_token_budget=64, batch_size=8)
    metrics = evaluate_capabilities(model, tokenizer, sets, settings)
    chat, math_ = metrics["heldout_loss"]["capabilities"]["chat"], metrics["heldout_loss"]["capabilities"]["math"]
    assert (chat["n"], chat["truncated"], chat["excluded_no_answer_token"]) == (1, 1, ["long"])
    assert (math_["n"], math_["truncated"], math_["excluded_no_answer_token"]) == (2, 1, [])
    # The excluded example adds nothing to the mean (not a zero, not a guess).
    assert chat["mean"] == pytest.approx(reference_loss(model, tokenizer, sets["chat"][0].messages), rel=1e-5)
    assert metrics["capabilities"]["chat"]["n"] == 2  # accuracy still scores it
    assert metrics["heldout_loss"]["settings"]["max_length"] == 12
    calls.clear()
    with pytest.raises(InputError, match=r"'chat'.*eval\.max_length=12"):
        evaluate_capabilities(model, tokenizer, {"chat": sets["chat"][1:], "math": sets["math"]},
                              settings)
    assert calls == []  # stopped before any generation


def test_eval_settings_check_the_loss_pass():
    settings = EvalSettings()
    assert (settings.max_length, settings.loss_token_budget) == (2048, 8192)
    with pytest.raises(ConfigError, match="loss_token_budget"):
        EvalSettings(max_length=16384)
    with pytest.raises(ConfigError, match="max_length"):
        EvalSettings(max_length=1)


def test_evaluate_command_reports_accuracy_and_loss(tiny_lab, tmp_path, capsys):
    from instruct_select.artifacts import ArtifactMismatchError
    from instruct_select.run.context import RunContext
    from instruct_select.run.stages import evaluate_stage

    out = tmp_path / "evaluation"
    model = tiny_lab.model("small")
    assert main(["--quiet", "evaluate", "--model", str(model), "--tests", str(tiny_lab.test), "--out", str(out),
                 "--device", "cpu", "--max-new-tokens", "4"]) == 0
    printed = capsys.readouterr().out
    outputs = json.loads((out / "manifest.json").read_text())["outputs"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(outputs) >= {"summary", "scores", "loss", "loss_summary"}
    assert outputs["loss"] == {c: v["mean"] for c, v in metrics["heldout_loss"]["capabilities"].items()}
    assert set(outputs["loss"]) == set(outputs["scores"]) and all(v > 0 for v in outputs["loss"].values())
    assert outputs["loss_summary"]["worst"] == max(outputs["loss"].values())
    assert "Held-out loss" in printed and f"{outputs['loss_summary']['macro']:.3f}" in printed
    # A new loss setting changes the evaluation's manifest: the folder is refused, naming it.
    context = RunContext.create(device="cpu")
    with pytest.raises(ArtifactMismatchError, match="max_length"):
        evaluate_stage(context, model, tiny_lab.test, out, EvalSettings(max_new_tokens=4, max_length=1024))
