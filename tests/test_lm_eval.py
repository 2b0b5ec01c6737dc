"""lm-evaluation-harness hand-off: a tiny base model plus a LoRA adapter, scored on tasks defined
on local JSONL files (one multiple-choice, one generation), summarised per capability. No network.

Skipped when lm-eval is not installed (it is optional: pip install 'instruct_select[lmeval]').
"""
from __future__ import annotations

import json
import sys

import pytest

from instruct_select.cli import main
from instruct_select.errors import ConfigError, InputError
from instruct_select.evaluate.lm_eval_adapter import (LmEvalSettings, capability_summary, model_arguments,
                                                      parse_mapping, parse_metrics, require_lm_eval, task_score)

MC_TASK = """task: tiny_mc
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
"""
GEN_TASK = """task: tiny_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["<|end|>"]
  max_gen_toks: 4
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def _write_tasks(folder):
    folder.mkdir()
    mc = folder / "mc.jsonl"
    mc.write_text("".join(json.dumps({"question": f"What is {i} + 1?", "choices": [str(i + 1), str(i + 2)],
                                      "answer": 0}) + "\n" for i in range(4)))
    gen = folder / "gen.jsonl"
    gen.write_text("".join(json.dumps({"question": f"Say {i}", "answer": str(i)}) + "\n" for i in range(3)))
    (folder / "tiny_mc.yaml").write_text(MC_TASK.format(data=mc))
    (folder / "tiny_gen.yaml").write_text(GEN_TASK.format(data=gen))
    return folder


def _adapter(base_dir, out):
    """A LoRA adapter over the tiny model with non-zero weights, saved as `train` saves one."""
    import torch

    from instruct_select.config import LoraSettings
    from instruct_select.models.loading import add_lora, load_base_model, load_tokenizer

    torch.manual_seed(0)
    model = add_lora(load_base_model(base_dir, device="cpu"), LoraSettings(r=2, alpha=4, dropout=0.0, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    model.save_pretrained(str(out))
    load_tokenizer(base_dir).save_pretrained(str(out))
    return out


def test_lm_eval_on_local_tasks_with_an_adapter(tiny_model_dir, tmp_path, monkeypatch, capsys):
    pytest.importorskip("lm_eval", reason="lm-eval is optional: pip install 'instruct_select[lmeval]' to run this")
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tasks = _write_tasks(tmp_path / "tasks")
    adapter = _adapter(tiny_model_dir, tmp_path / "train" / "model")
    code = main(["--quiet", "lm-eval", "--model", str(adapter), "--tasks", "tiny_mc,tiny_gen",
                 "--include-path", str(tasks), "--only-include-path", "--device", "cpu", "--dtype", "float32",
                 "--capabilities", "tiny_mc=knowledge,tiny_gen=math", "--batch-size", "4"])
    assert code == 0
    out = tmp_path / "train" / "lm-eval"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_args"]["peft"] == str(adapter)  # base + adapter, not the bare base
    assert summary["model_args"]["pretrained"] == str(tiny_model_dir)
    assert set(summary["scores"]) == {"knowledge", "math"}
    assert summary["tasks"]["tiny_mc"]["metric"] == "acc,none"
    assert summary["tasks"]["tiny_gen"]["metric"] == "exact_match,none"
    assert summary["summary"]["n_capabilities"] == 2
    assert 0 <= summary["summary"]["worst"] <= summary["summary"]["macro"] <= 1
    # The prompts went through the tokenizer's chat template (saved beside the adapter).
    samples = json.loads((out / "samples.json").read_text())
    assert "<|user|>" in samples["tiny_gen"][0]["prompt"] and "<|assistant|>" in samples["tiny_mc"][0]["prompt"]
    assert (out / "lm_eval_results.json").is_file()
    printed = capsys.readouterr().out
    assert f"| {tmp_path.name} |" in printed and "knowledge" in printed and "tiny_mc" in printed


def test_unknown_task_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("lm_eval", reason="lm-eval is optional: pip install 'instruct_select[lmeval]' to run this")
    tasks = _write_tasks(tmp_path / "tasks")
    code = main(["lm-eval", "--model", str(tiny_model_dir), "--tasks", "tiny_nope", "--include-path", str(tasks),
                 "--only-include-path", "--device", "cpu"])
    assert code == 2 and "no task(s) ['tiny_nope']" in capsys.readouterr().err


def test_model_folders_are_checked_before_lm_eval_loads_them(tiny_model_dir, tmp_path):
    """The same checks as every other command: a one-line error instead of lm-eval's traceback."""
    import shutil

    settings = LmEvalSettings(tasks=["tiny_mc"], device="cpu")
    assert model_arguments(tiny_model_dir, None, settings)["pretrained"] == str(tiny_model_dir)
    with pytest.raises(ConfigError, match="does not exist"):
        model_arguments(tmp_path / "missing", None, settings)
    root = tmp_path / "train"  # the output folder of `train`: its model is in model/
    shutil.copytree(tiny_model_dir, root / "model")
    with pytest.raises(ConfigError, match=f"give its model folder: {root / 'model'}"):
        model_arguments(root, None, settings)
    tokenizer_only = tmp_path / "tokenizer_only"
    tokenizer_only.mkdir()
    for path in tiny_model_dir.iterdir():
        if "token" in path.name:
            shutil.copy(path, tokenizer_only)
    with pytest.raises(ConfigError, match="holds a tokenizer but no model"):
        model_arguments(tokenizer_only, None, settings)
    adapter = _adapter(tiny_model_dir, tmp_path / "adapter")
    with pytest.raises(ConfigError, match="does not exist"):  # --base names a missing folder
        model_arguments(adapter, tmp_path / "no_base", settings)


def test_missing_lm_eval_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    with pytest.raises(ConfigError, match=r"instruct_select\[lmeval\]"):
        require_lm_eval()


def test_scores_summaries_and_mappings():
    results = {"results": {"gsm8k": {"alias": "gsm8k", "sample_len": 10, "exact_match,strict-match": 0.2,
                                     "exact_match_stderr,strict-match": 0.01, "exact_match,flexible-extract": 0.3},
                           "arc": {"acc,none": 0.5, "acc_norm,none": 0.6}},
               "groups": {"mmlu": {"acc,none": 0.4}}}
    assert task_score(results, "gsm8k") == ("exact_match,strict-match", 0.2)
    assert task_score(results, "gsm8k", "exact_match,flexible-extract") == ("exact_match,flexible-extract", 0.3)
    assert task_score(results, "arc", "acc_norm") == ("acc_norm,none", 0.6)
    assert task_score(results, "mmlu") == ("acc,none", 0.4)
    with pytest.raises(InputError, match="--metric arc=METRIC"):
        task_score(results, "arc", "f1")
    summary = capability_summary({"gsm8k": 0.2, "math": 0.4, "mmlu": 0.9}, {"gsm8k": "math", "math": "math",
                                                                            "mmlu": "knowledge"})
    assert summary["scores"] == pytest.approx({"knowledge": 0.9, "math": 0.3})
    assert summary["summary"]["worst_capability"] == "math"
    assert parse_mapping("gsm8k=math, mmlu=knowledge") == {"gsm8k": "math", "mmlu": "knowledge"}
    assert parse_metrics(["gsm8k=exact_match,flexible-extract"]) == {"gsm8k": "exact_match,flexible-extract"}
    with pytest.raises(ConfigError, match="task=name"):
        parse_mapping("gsm8k")
    with pytest.raises(ConfigError, match="not in --tasks"):
        LmEvalSettings(tasks=["gsm8k"], capabilities={"mmlu": "knowledge"})


def test_capability_file(tmp_path):
    path = tmp_path / "caps.yaml"
    path.write_text("gsm8k: math\nhumaneval: code\n")
    assert parse_mapping(str(path)) == {"gsm8k": "math", "humaneval": "code"}
