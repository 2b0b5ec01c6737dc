"""Multiple-choice scoring by log-likelihood: the cached fast path equals one forward per option
(to 1e-5), the tokenisation splits as lm-eval's, and accuracy picks the right option on a
question built so that the answer is known."""
from __future__ import annotations

import pytest
import torch

from instruct_select.errors import InputError
from instruct_select.evaluate.multiple_choice import (choice_outcomes, encode_question, option_loglikelihoods,
                                                      option_loglikelihoods_naive, score_questions, standard_error)


@pytest.fixture()
def tiny(tiny_model_dir):
    from instruct_select.models.loading import load_tokenizer
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), load_tokenizer(tiny_model_dir)


def test_fast_path_equals_one_forward_per_option(tiny):
    model, tokenizer = tiny
    context = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}],
                                           add_generation_prompt=True, tokenize=False)
    # Options of different lengths (1 token up to many), so the batch is padded.
    question = encode_question(tokenizer, context, ["5", "The answer is 5.", "hello world, how are you", "red"])
    assert len({len(ids) for ids in question.option_ids}) > 1
    with torch.inference_mode():
        fast, naive = option_loglikelihoods(model, question), option_loglikelihoods_naive(model, question)
    assert fast == pytest.approx(naive, abs=1e-5)
    assert all(value < 0 for value in fast)


def test_single_token_options_need_no_second_pass(tiny):
    model, tokenizer = tiny
    question = encode_question(tokenizer, "<|user|>\nPick one<|end|>\n<|assistant|>", ["1", "2", "3", "4"])
    assert all(len(ids) == 1 for ids in question.option_ids)
    fast, naive = score_questions(model, [question]), score_questions(model, [question], naive=True)
    assert fast[0] == pytest.approx(naive[0], abs=1e-5)


def test_tokens_every_option_starts_with_join_the_shared_pass(tiny):
    """The context's trailing newline moves into every option (as in lm-eval): a shared first token,
    scored once in the shared pass; options that share more tokens still score as the reference."""
    model, tokenizer = tiny
    context = "<|user|>\nPick one<|end|>\n<|assistant|>\n"
    for options in (["1", "2", "3", "4"], ["red green", "red blue", "red"], ["hello world", "hello"]):
        question = encode_question(tokenizer, context, options)
        assert len({ids[0] for ids in question.option_ids}) == 1  # the newline
        fast, naive = score_questions(model, [question]), score_questions(model, [question], naive=True)
        assert fast[0] == pytest.approx(naive[0], abs=1e-5), options


def test_split_matches_lm_eval_encode_pair(tiny_tokenizer):
    # lm-eval moves the context's trailing spaces to the continuation and splits the whole encoding.
    question = encode_question(tiny_tokenizer, "Reverse the words: ", ["blue green red", "red"])
    whole = tiny_tokenizer("Reverse the words: blue green red", add_special_tokens=False)["input_ids"]
    context = tiny_tokenizer("Reverse the words:", add_special_tokens=False)["input_ids"]
    assert question.context_ids == context
    assert question.option_ids[0] == whole[len(context):]
    assert question.option_chars == [len("blue green red"), len("red")]  # lm-eval: the choice text


def test_known_item_is_answered_by_loglikelihood(tiny):
    """A model that has learnt one answer picks it; acc and acc_norm follow their definitions."""
    model, tokenizer = tiny
    context = tokenizer.apply_chat_template([{"role": "user", "content": "Name the capital of Velkar."}],
                                           add_generation_prompt=True, tokenize=False)
    options = ["Orrin", "blue green red", "hello", "fine"]
    question = encode_question(tokenizer, context, options)
    # Teach the tiny model the answer (a few steps of plain next-token training on it).
    ids = torch.tensor([question.context_ids + question.option_ids[0]])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(30):
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    scores = score_questions(model, [question])[0]
    outcome = choice_outcomes(scores, question.option_chars, answer=0)
    assert outcome["acc"] and outcome["pick"] == 0
    assert not choice_outcomes(scores, question.option_chars, answer=1)["acc"]


def test_acc_norm_divides_by_characters():
    # Raw: option 0 wins (-4 > -6); per byte: option 1 wins (-6/6 = -1 > -4/2 = -2).
    outcome = choice_outcomes([-4.0, -6.0], [2, 6], answer=1)
    assert not outcome["acc"] and outcome["acc_norm"]
    assert choice_outcomes([-1.0, -1.0], [3, 3], answer=0)["pick"] == 0  # ties go to the first


def test_standard_error_is_the_sample_one():
    assert standard_error([1, 0, 1, 0]) == pytest.approx((1 / 3) ** 0.5 / 2)
    assert standard_error([1]) == 0.0


def test_bad_questions_are_refused(tiny_tokenizer):
    with pytest.raises(InputError, match="at least two"):
        encode_question(tiny_tokenizer, "Q", ["only"])
    with pytest.raises(InputError, match="empty context"):
        encode_question(tiny_tokenizer, "", ["a", "b"])
