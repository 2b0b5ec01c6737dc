"""Gradient features: batched per-example gradients against a one-at-a-time reference, the Adam
transform against a hand computation, the projection's seeding and inner products, the store."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from instruct_select.config import LoraSettings
from instruct_select.data.batching import collate
from instruct_select.data.chat import tokenize_examples
from instruct_select.data.example import Example
from instruct_select.errors import ArtifactMismatchError
from instruct_select.config import FeatureSettings
from instruct_select.features.extract import TokenizedData, extract_features, make_projector, projected_features
from instruct_select.features.gradients import lora_modules, per_example_gradients
from instruct_select.features.optimizer_state import AdamMoments, adam_feature
from instruct_select.features.projection import LayerwiseProjector, normalise_rows
from instruct_select.features.store import BackgroundWriter, FeatureStore
from instruct_select.models.loading import add_lora, load_base_model


def _examples():
    prompts = ["hi", "What is 2 + 3?", "Reverse the words: red green blue", "hello world, how are you today?"]
    answers = ["hello", "5", "blue green red", "I am fine, thanks! " * 3]
    return [Example(f"e{i}", "t", [{"role": "user", "content": p}, {"role": "assistant", "content": a}])
            for i, (p, a) in enumerate(zip(prompts, answers))]


@pytest.fixture()
def lora_model(tiny_model_dir):
    torch.manual_seed(0)
    model = add_lora(load_base_model(tiny_model_dir), LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"]))
    # LoRA B starts at zero, which would make A's gradient zero: give it values.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.eval()
    return model


def _reference_gradients(model, tokenizer, examples):
    """One example per backward pass: the obvious, slow way."""
    from instruct_select.loss import model_per_example_loss

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    out = []
    for item in tokenize_examples(tokenizer, examples, 128)[0]:
        loss = model_per_example_loss(model, collate([item], tokenizer.pad_token_id))[0]
        grads = torch.autograd.grad(loss, [p for _, p in named])
        out.append({n: g for (n, _), g in zip(named, grads)})
    return out


def test_batched_per_example_gradients_equal_reference(lora_model, tiny_tokenizer):
    examples = _examples()
    items, _ = tokenize_examples(tiny_tokenizer, examples, 128)
    assert len({len(i) for i in items}) == len(items)  # mixed lengths: the batch is padded
    batch = collate(items, tiny_tokenizer.pad_token_id)
    _, batched = per_example_gradients(lora_model, batch)
    reference = _reference_gradients(lora_model, tiny_tokenizer, examples)
    assert set(batched) == set(reference[0])
    for b, ref in enumerate(reference):
        for name, g in ref.items():
            err = (batched[name][b] - g).norm() / g.norm().clamp(min=1e-30)
            assert err <= 1e-4, (name, b, float(err))


def test_adam_feature_hand_computation():
    g = torch.tensor([[0.5, -2.0]])
    m = torch.tensor([0.1, 0.2])
    v = torch.tensor([0.01, 0.04])
    b1, b2, eps = 0.9, 0.999, 1e-8
    m1 = [0.9 * 0.1 + 0.1 * 0.5, 0.9 * 0.2 + 0.1 * -2.0]
    v1 = [0.999 * 0.01 + 0.001 * 0.25, 0.999 * 0.04 + 0.001 * 4.0]
    want = torch.tensor([[m1[0] / (v1[0] + eps) ** 0.5, m1[1] / (v1[1] + eps) ** 0.5]])
    torch.testing.assert_close(adam_feature(g, m, v, b1, b2, eps), want)
    # ε inside the square root: with zero moments and gradient, the result is 0, not nan.
    assert torch.all(adam_feature(torch.zeros(1, 2), torch.zeros(2), torch.zeros(2), b1, b2, eps) == 0)


@pytest.mark.parametrize("design", ["row_signs", "shared_rows"])
def test_projection_seeded_and_matches_dense_form(design):
    shapes = {"a.lora_A.weight": (4, 10), "a.lora_B.weight": (12, 4), "b.lora_A.weight": (3, 7)}
    p1 = LayerwiseProjector(shapes, 24, seed=5, design=design)
    p2 = LayerwiseProjector(dict(reversed(list(shapes.items()))), 24, seed=5, design=design)
    grads = {n: torch.randn(3, *s) for n, s in shapes.items()}
    torch.testing.assert_close(p1.project(grads), p2.project(grads))  # order-free, seeded by name
    assert not torch.allclose(p1.project(grads), LayerwiseProjector(shapes, 24, seed=6, design=design).project(grads))
    flat = torch.cat([grads[n].reshape(3, -1) for n in shapes], dim=1)
    torch.testing.assert_close(p1.project(grads), flat @ p1.dense_matrix(), rtol=1e-5, atol=1e-5)


def test_row_signs_is_shared_rows_with_a_sign_per_weight():
    """The new default differs from the old design exactly by a seeded ±1 on every gradient entry."""
    shapes = {"a.lora_A.weight": (4, 10), "a.lora_B.weight": (12, 4)}
    signed, shared = (LayerwiseProjector(shapes, 24, seed=5, design=d) for d in ("row_signs", "shared_rows"))
    grads = {n: torch.randn(3, *s) for n, s in shapes.items()}
    flipped = {}
    for name, g in grads.items():
        signs = signed.orient(name, torch.ones(1, *g.shape[1:]))[0]  # (small, big)
        assert set(signs.unique().tolist()) == {-1.0, 1.0}
        flipped[name] = g * (signs.t() if g.shape[1] > g.shape[2] else signs)
    torch.testing.assert_close(signed.project(grads), shared.project(flipped), rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="projection must be one of row_signs, shared_rows"):
        LayerwiseProjector(shapes, 24, seed=5, design="dense")
    with pytest.raises(Exception, match="features projection must be row_signs or shared_rows"):
        FeatureSettings(projection="dense")


@pytest.mark.parametrize("design", ["row_signs", "shared_rows"])
def test_projection_preserves_inner_products_at_default_size(design):
    dim = FeatureSettings().dim
    shapes = {f"layer{i}.lora_A.weight": (8, 96) for i in range(4)}
    shapes.update({f"layer{i}.lora_B.weight": (96, 8) for i in range(4)})
    projector = LayerwiseProjector(shapes, dim, seed=0, design=design)
    torch.manual_seed(1)
    n = 24
    base = torch.randn(n, sum(a * b for a, b in shapes.values()))
    x = base + 0.8 * torch.randn(n, 1) * base[0]  # correlated, so cosines span a range
    grads, start = {}, 0
    for name, (a, b) in shapes.items():
        grads[name] = x[:, start:start + a * b].reshape(n, a, b)
        start += a * b
    exact = normalise_rows(x) @ normalise_rows(x).T
    projected = normalise_rows(projector.project(grads))
    approx = projected @ projected.T
    assert (approx - exact).abs().max() < 0.06
    assert np.corrcoef(exact.flatten(), approx.flatten())[0, 1] > 0.99


def test_feature_store_resumes_to_same_result(lora_model, tiny_tokenizer, tmp_path):
    settings = FeatureSettings(dim=32, dtype="float32", token_budget=64, max_batch_size=2, max_length=64)
    examples = _examples()
    ids = [e.id for e in examples]
    full = FeatureStore.open_or_create(tmp_path / "full", ids, 32, "float32", {"model": "m"})
    extract_features(lora_model, TokenizedData.of(tiny_tokenizer, examples, 64), full, settings)
    assert full.complete()
    part = FeatureStore.open_or_create(tmp_path / "part", ids, 32, "float32", {"model": "m"})
    extract_features(lora_model, TokenizedData.of(tiny_tokenizer, examples[:2], 64), part, settings)
    assert part.pending_ids() == ids[2:]
    reopened = FeatureStore.open_or_create(tmp_path / "part", ids, 32, "float32", {"model": "m"})
    extract_features(lora_model, TokenizedData.of(tiny_tokenizer, examples, 64), reopened, settings)
    np.testing.assert_allclose(reopened.block(0, 4), full.block(0, 4), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(full.block(0, 4), axis=1), 1, atol=1e-5)
    with pytest.raises(ArtifactMismatchError, match="model: was 'm', now 'other'"):
        FeatureStore.open_or_create(tmp_path / "part", ids, 32, "float32", {"model": "other"})


@pytest.mark.parametrize("side_bytes", [None, 1], ids=["one-product", "a-product-per-layer"])
@pytest.mark.parametrize("adam", [False, True], ids=["sgd", "adam"])
def test_streamed_features_equal_materialised_gradients(lora_model, tiny_tokenizer, monkeypatch, side_bytes, adam):
    """The fast path (layers side by side, one projection product, reused buffers) against the
    obvious one: every layer's full per-example gradient, transformed and projected on its own."""
    import instruct_select.features.extract as extract

    if side_bytes is not None:
        monkeypatch.setattr(extract, "SIDE_BY_SIDE_BYTES", side_bytes)  # forces a product per layer
    settings = FeatureSettings(dim=64)
    items, _ = tokenize_examples(tiny_tokenizer, _examples(), 128)
    batch = collate(items, tiny_tokenizer.pad_token_id)
    projector = make_projector(lora_model, settings)
    moments = _random_moments(lora_model) if adam else None
    buffers: dict = {}
    streamed = projected_features(lora_model, batch, projector, moments, buffers)
    again = projected_features(lora_model, collate(items[:2], tiny_tokenizer.pad_token_id), projector, moments, buffers)
    _, grads = per_example_gradients(lora_model, batch)
    if adam:
        grads = {name: moments.transform(name, g) for name, g in grads.items()}
    reference = normalise_rows(projector.project(grads))
    torch.testing.assert_close(streamed, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again, reference[:2], rtol=1e-5, atol=1e-6)  # a reused, larger buffer
    assert set(lora_modules(lora_model)) == set(projector.shapes)


def _random_moments(model):
    moments = AdamMoments.__new__(AdamMoments)
    generator = torch.Generator().manual_seed(1)
    moments.beta1, moments.beta2, moments.eps = 0.9, 0.999, 1e-8
    shapes = {name: m.weight.shape for name, m in lora_modules(model).items()}
    moments.exp_avg = {n: torch.randn(s, generator=generator) * 1e-3 for n, s in shapes.items()}
    moments.exp_avg_sq = {n: torch.rand(s, generator=generator) * 1e-6 for n, s in shapes.items()}
    return moments


def test_projection_groups_sum_to_the_layerwise_projection():
    # rank 4 and 8 divide k (two groups, one product each); rank 5 does not (its own group with an R1)
    shapes = {"a.lora_A.weight": (4, 10), "a.lora_B.weight": (12, 4), "b.lora_A.weight": (8, 16),
              "b.lora_B.weight": (9, 8), "c.lora_A.weight": (5, 6)}
    projector = LayerwiseProjector(shapes, 24, seed=3)
    assert [g.names for g in projector.groups] == [["a.lora_A.weight", "a.lora_B.weight"],
                                                   ["b.lora_A.weight", "b.lora_B.weight"], ["c.lora_A.weight"]]
    grads = {n: torch.randn(3, *s) for n, s in shapes.items()}
    total = sum(projector.project_group(g, torch.cat([projector.orient(n, grads[n]) for n in g.names], dim=2))
                for g in projector.groups)
    torch.testing.assert_close(total, projector.project(grads), rtol=1e-5, atol=1e-6)


def test_background_writer_writes_everything_and_reports_a_failure(tmp_path):
    store = FeatureStore.open_or_create(tmp_path / "s", ["a", "b", "c"], 2, "float32", {})
    with BackgroundWriter(store, depth=1) as writer:
        writer.write(["a"], np.ones((1, 2)))
        writer.write(["b", "c"], np.full((2, 2), 2.0))
    assert store.complete() and store.block(0, 3).tolist() == [[1, 1], [2, 2], [2, 2]]
    with pytest.raises(KeyError):
        with BackgroundWriter(store) as writer:
            writer.write(["nope"], np.ones((1, 2)))
    with pytest.raises(RuntimeError, match="the caller's"):  # the caller's error wins over the writer's
        with BackgroundWriter(store) as writer:
            writer.write(["nope"], np.ones((1, 2)))
            raise RuntimeError("the caller's")


def test_final_states_from_the_body_equal_the_whole_models(lora_model, tiny_tokenizer):
    """The hidden-states stage takes the last layer from the model's body alone (no logits): the
    same numbers as the whole model's last hidden states."""
    from instruct_select.features.hidden import _final_states

    batch = collate(tokenize_examples(tiny_tokenizer, _examples(), 128)[0], tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        whole = lora_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           output_hidden_states=True).hidden_states[-1]
        assert torch.equal(_final_states(lora_model, batch["input_ids"], batch["attention_mask"]), whole)
