"""IDEAL: the K-FAC inverse against dense algebra, K-FAC influence against the exact Hessian, the
update's sign on a problem solved in closed form, resampling, sharded statistics, the recipe, and
one round end to end on the tiny lab.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from instruct_select.data.batching import collate
from instruct_select.data.chat import TokenizedExample
from instruct_select.data.example import Example
from instruct_select.errors import ConfigError
from instruct_select.loss import per_example_loss
from instruct_select.ideal import kfac
from instruct_select.ideal.domain_gradients import (Mixture, PassSettings, SolveSettings, compute_influences, domain_gradient_sums,
                                             domain_influences, example_scores, fit_kfac,
                                             gradient_sum, precondition, reference_gradient)
from instruct_select.ideal.update import (entry_counts, influence_to_beta, mixture_entries,
                                          new_volumes)

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ideal_llama31_8b.yaml"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is many times faster than two contending on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------
# A tiny language model: embedding -> up -> tanh -> down (logits), positions independent.


class BigramMLP(nn.Module):
    def __init__(self, vocab: int = 10, hidden: int = 6, inner: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.up = nn.Linear(hidden, inner, bias=False)
        self.down = nn.Linear(inner, vocab, bias=False)

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.down(torch.tanh(self.up(self.embed(input_ids)))))


def _sequences(gen, transition, n: int, prefix: str) -> list[TokenizedExample]:
    """Markov sequences of 6-10 tokens; the first 3 are the prompt (unlabelled)."""
    vocab = transition.shape[0]
    items = []
    for k in range(n):
        tokens = [int(torch.randint(3, vocab, (1,), generator=gen))]
        for _ in range(int(torch.randint(5, 10, (1,), generator=gen))):
            tokens.append(int(torch.multinomial(transition[tokens[-1]], 1, generator=gen)))
        items.append(TokenizedExample(f"{prefix}-{k:03d}", tokens, [-100] * 3 + tokens[3:]))
    return items


@pytest.fixture(scope="module")
def toy():
    """Four domains with their own bigram statistics; the reference leans on d0 (and some d2)."""
    gen = torch.Generator().manual_seed(0)
    transitions = [torch.softmax(3 * torch.randn(10, 10, generator=gen), -1) for _ in range(4)]
    items, domain_of = [], {}
    for d, transition in enumerate(transitions):
        part = _sequences(gen, transition, 24, f"d{d}")
        items += part
        domain_of.update({x.id: f"d{d}" for x in part})
    reference = _sequences(gen, 0.7 * transitions[0] + 0.3 * transitions[2], 40, "ref")
    torch.manual_seed(0)
    model = BigramMLP()
    batch = collate(items, 0)
    # Trained to its optimum: the implicit-function theorem's setting, and where the Hessian is
    # its Gauss-Newton part, which K-FAC approximates (half-trained, the two part ways).
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=150, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        optimizer.zero_grad()
        loss = per_example_loss(model(batch["input_ids"]).logits, batch["labels"]).mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    return SimpleNamespace(model=model, items=items, domain_of=domain_of, reference=reference)


def _cfg(**kw) -> PassSettings:
    return PassSettings(**{"pad_id": 0, "token_budget": 4096, "batch_size": 64, "fisher": "empirical", **kw})


def _random_psd(n: int, gen, low: float, high: float) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.linspace(low, high, n, dtype=torch.float64)) @ q.T


def _eigen_of(a: torch.Tensor, g: torch.Tensor) -> kfac.KronEigen:
    stats = {"l": {"a_sum": a.float(), "a_count": torch.tensor(1.0, dtype=torch.float64),
                   "g_sum": g.float(), "g_count": torch.tensor(1.0, dtype=torch.float64)}}
    return kfac.eigenbases(stats)["l"]


# ------------------------------------------------------------------------------------------
# The inverse


@pytest.mark.parametrize("ekfac", [False, True])
def test_inverse_kronecker_solve_equals_dense_inverse(ekfac):
    gen = torch.Generator().manual_seed(1)
    out_f, in_f, damping = 5, 3, 0.05  # out != in: a transposed projection cannot pass
    eigen = _eigen_of(_random_psd(in_f, gen, 0.5, 3.0), _random_psd(out_f, gen, 0.2, 4.0))
    if ekfac:
        eigen.diag = torch.rand(out_f, in_f, generator=gen) * 3 + 0.1
    v = torch.randn(out_f, in_f, generator=gen)
    basis = torch.kron(eigen.q_g.double(), eigen.q_a.double())  # row-major vec: vec(g aᵀ) = g ⊗ a
    dense = basis @ torch.diag(eigen.eigenvalues().double().flatten()) @ basis.T  # = G ⊗ A for K-FAC
    expected = torch.linalg.solve(dense + damping * torch.eye(out_f * in_f, dtype=torch.float64),
                                  v.double().flatten()).view(out_f, in_f)
    got = kfac.inverse_hvp(eigen, v, damping).double()
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    if not ekfac:  # and the factors really are G ⊗ A in that vec order
        a = (eigen.q_a.double() * eigen.l_a.double()) @ eigen.q_a.double().T
        g = (eigen.q_g.double() * eigen.l_g.double()) @ eigen.q_g.double().T
        assert torch.allclose(dense, torch.kron(g, a), atol=1e-5)


def test_eigenvalues_are_divided_not_multiplied():
    gen = torch.Generator().manual_seed(2)
    eigen = _eigen_of(_random_psd(4, gen, 2.0, 5.0), _random_psd(3, gen, 3.0, 6.0))
    i, j = 1, 2
    v = torch.outer(eigen.q_g[:, i], eigen.q_a[:, j])  # an eigenvector of G ⊗ A
    value = float(eigen.l_g[i] * eigen.l_a[j])  # between 6 and 30: far from 1
    got = kfac.inverse_hvp(eigen, v, 0.0)
    assert torch.allclose(got, v / value, atol=1e-6)
    assert not torch.allclose(got, v * value, atol=1e-2)  # what multiplying would give
    with pytest.raises(ConfigError, match="damping"):
        kfac.inverse_hvp(_eigen_of(torch.zeros(2, 2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)),
                         torch.ones(2, 2), 0.0)


# ------------------------------------------------------------------------------------------
# Statistics against slow references


def test_factors_and_ekfac_match_a_per_example_loop(toy):
    """Vectorised batch statistics (padding, token mask, T_i scale) against one example at a time."""
    model, items = toy.model, toy.items[:7]  # different lengths: padding inside the batch
    modules = kfac.select_layers(model, ["up", "down"])
    cfg = _cfg()
    eigens = fit_kfac(model, modules, items, cfg, ekfac=True)
    for name, module in modules.items():
        a_sum = g_sum = diag = 0
        tokens = 0
        for item in items:
            batch = collate([item], 0)
            _, io = kfac.batch_io(model, batch, {name: module})
            a, g = io[name][0][0], io[name][1][0]
            last = max(t for t in range(len(item) - 1) if item.labels[t + 1] != -100)
            a_sum = a_sum + a[: last + 1].T @ a[: last + 1]
            tokens += last + 1
            n_labels = sum(1 for t in item.labels[1:] if t != -100)
            g_sum = g_sum + n_labels * g.T @ g
            grad = torch.autograd.grad(per_example_loss(model(batch["input_ids"]).logits, batch["labels"]).sum(),
                                       module.weight)[0]
            assert torch.allclose(grad, g.T @ a, atol=1e-6)  # ∇W L_i = Σ_t g_t a_tᵀ
            e = eigens[name]
            diag = diag + n_labels * (e.q_g.T @ grad @ e.q_a) ** 2
        e = eigens[name]
        a_mean = (e.q_a * e.l_a) @ e.q_a.T
        g_mean = (e.q_g * e.l_g) @ e.q_g.T
        assert torch.allclose(a_mean, a_sum / tokens, atol=1e-5)
        assert torch.allclose(g_mean, g_sum / len(items), atol=1e-6)
        assert torch.allclose(e.diag, diag / len(items), atol=1e-7, rtol=1e-4)


def test_statistics_reduce_over_shards(toy, tmp_path):
    """Sums over two halves, added (what the all-reduce does), equal the sums over everything."""
    model, items = toy.model, toy.items
    modules = kfac.select_layers(model, ["up", "down"])

    def factor_stats(part):
        stats = kfac.new_factor_stats(modules)
        kfac.for_each_batch(model, part, modules, PassSettings(pad_id=0, token_budget=4096, batch_size=64),
                            lambda chosen, losses, io, batch: kfac.accumulate_factors(
                                stats, io, batch, torch.ones(len(chosen))))
        return stats

    whole = factor_stats(items)
    merged = kfac.merge(factor_stats(items[::2]), factor_stats(items[1::2]))
    for name in whole:
        for key in whole[name]:
            assert torch.allclose(whole[name][key].double(), merged[name][key].double(), rtol=1e-5, atol=1e-6)
    # A real (one-process) process group: all_reduce_ and shard run and leave the sums whole.
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert kfac.shard(items) == items
        reduced = kfac.all_reduce_(factor_stats(items))
        grads, loss, count = gradient_sum(model, modules, items, _cfg())
    finally:
        dist.destroy_process_group()
    assert torch.equal(reduced["up"]["a_sum"], whole["up"]["a_sum"]) and count == len(items)


# ------------------------------------------------------------------------------------------
# Influence


def _exact_influences(model, items, domain_of, reference, names, damping):
    """−∇L_refᵀ (H + λI)⁻¹ ∇L_{D_j} with H the exact Hessian of the mean training loss."""
    weights = {n: getattr(model, n).weight for n in names}
    shapes = [w.shape for w in weights.values()]
    flat0 = torch.cat([w.detach().flatten() for w in weights.values()]).double().requires_grad_()

    def losses(flat, part):
        params, start = {}, 0
        for n, shape in zip(names, shapes):
            params[f"{n}.weight"] = flat[start:start + shape.numel()].view(shape).float()
            start += shape.numel()
        batch = collate(part, 0)
        logits = torch.func.functional_call(model, params, (batch["input_ids"],)).logits
        return per_example_loss(logits, batch["labels"]).double()

    hessian = torch.autograd.functional.hessian(lambda f: losses(f, items).mean(), flat0.detach(), vectorize=True)
    g_ref = torch.autograd.grad(losses(flat0, reference).mean(), flat0)[0]
    solved = torch.linalg.solve(hessian + damping * torch.eye(len(flat0), dtype=torch.float64), g_ref)
    out = {}
    for d in sorted(set(domain_of.values())):
        g_d = torch.autograd.grad(losses(flat0, [x for x in items if domain_of[x.id] == d]).sum(), flat0)[0]
        out[d] = -float(solved @ g_d)
    return out


def compare_kfac_with_exact(toy, damping: float = 1e-3) -> dict:
    """K-FAC / EK-FAC domain influences vs the exact damped Hessian's, on the toy model: the report."""
    exact = _exact_influences(toy.model, toy.items, toy.domain_of, toy.reference, ("up", "down"), damping)
    report = {"damping": damping, "exact": exact}
    for fisher in ("sampled", "empirical"):
        for ekfac in (False, True):
            got = compute_influences(toy.model, Mixture(toy.items, toy.domain_of), toy.reference, _cfg(fisher=fisher),
                                     SolveSettings(layers=["up", "down"], damping=damping, relative=False,
                                                   ekfac=ekfac)).influences
            x, y = torch.tensor(list(exact.values())), torch.tensor([got[d] for d in exact])
            report[f"{'EK-FAC' if ekfac else 'K-FAC'} {fisher}"] = {
                "influences": got, "correlation": round(float(torch.corrcoef(torch.stack([x, y]))[0, 1]), 4),
                "sign_agreement": float((x.sign() == y.sign()).float().mean()),
                "same_beta_order": torch.argsort(x).tolist() == torch.argsort(y).tolist()}
    return report


def test_kfac_influence_agrees_with_exact_hessian(toy):
    report = compare_kfac_with_exact(toy)
    print("\nK-FAC vs exact damped Hessian, domain influences:\n" + json.dumps(report, indent=1))
    for key, row in report.items():
        if key.startswith(("K-FAC", "EK-FAC")):
            assert row["correlation"] > 0.8, (key, row)
            assert row["sign_agreement"] >= 0.75, (key, row)


def test_domain_gradients_are_sums(toy):
    model, modules, cfg = toy.model, kfac.select_layers(toy.model, ["up", "down"]), _cfg()
    items, domain_of = toy.items, toy.domain_of
    once = domain_gradient_sums(model, modules, items, domain_of, cfg)
    twice = domain_gradient_sums(model, modules, items, domain_of, cfg,
                                 counts={x.id: 2 if domain_of[x.id] == "d1" else 1 for x in items})
    for d in once:
        for name in modules:
            factor = 2 if d == "d1" else 1
            assert torch.allclose(twice[d][name], factor * once[d][name], atol=1e-6)
    # the scores' sums are −⟨H⁻¹∇L_ref, ∇L_{D_j}⟩ with the explicit sums
    eigens = fit_kfac(model, modules, items, cfg)
    preconditioned, _ = precondition(eigens, reference_gradient(model, modules, toy.reference, cfg)[0], 1e-3, False)
    influences = domain_influences(example_scores(model, modules, items, preconditioned, cfg), domain_of)
    for d, value in influences.items():
        explicit = -sum(float((preconditioned[n] * once[d][n]).sum()) for n in modules)
        assert value == pytest.approx(explicit, rel=1e-4, abs=1e-6)


# ------------------------------------------------------------------------------------------
# The update


def test_update_sign_on_a_quadratic_problem():
    """L_i(θ) = ½‖θ − c_i‖²_M, L_ref = ½‖θ − r‖²: θ* and its reweighted versions in closed form."""
    gen = torch.Generator().manual_seed(3)
    m_mat = _random_psd(3, gen, 0.5, 2.0)
    centres = {"a": torch.tensor([1.0, 0, 0], dtype=torch.float64), "b": torch.tensor([-1.0, 0.5, 0], dtype=torch.float64),
               "c": torch.tensor([0.0, -1.0, 1.0], dtype=torch.float64)}
    volumes = {"a": 30, "b": 50, "c": 20}
    r = torch.tensor([0.8, 0.2, 0.1], dtype=torch.float64)

    def optimum(vol):  # argmin Σ_j n_j ½‖θ − c_j‖²_M = the volume-weighted mean of the centres
        return sum(vol[d] * centres[d] for d in vol) / sum(vol.values())

    def ref_loss(theta):
        return 0.5 * float((theta - r) @ (theta - r))

    theta = optimum(volumes)
    hessian = sum(volumes.values()) * m_mat
    g_ref = theta - r
    influence = {d: -float(g_ref @ torch.linalg.solve(hessian, volumes[d] * m_mat @ (theta - centres[d])))
                 for d in volumes}
    for d in volumes:  # I_j is dL_ref/dε for up-weighting domain j by ε
        eps = 1e-6
        bumped = optimum({k: v * (1 + eps) if k == d else v for k, v in volumes.items()})
        assert (ref_loss(bumped) - ref_loss(theta)) / eps == pytest.approx(influence[d], rel=1e-3)
    beta = influence_to_beta(influence, 0.15)
    assert max(abs(b) for b in beta.values()) == pytest.approx(0.15)
    for d in volumes:
        assert (beta[d] > 0) == (influence[d] < 0)  # a domain that lowers the reference loss grows
    after = new_volumes(volumes, beta)
    assert ref_loss(optimum(after)) < ref_loss(theta)


def test_new_volumes_round_half_up_and_keep_a_floor():
    assert new_volumes({"a": 10, "b": 10, "c": 3}, {"a": 0.15, "b": -0.15, "c": -0.5}) == {"a": 12, "b": 9, "c": 2}
    assert new_volumes({"a": 1}, {"a": -0.9}) == {"a": 1}
    assert influence_to_beta({"a": 0.0, "b": 0.0}, 0.15) == {"a": 0.0, "b": 0.0}
    with pytest.raises(ConfigError, match="no influence"):
        new_volumes({"a": 1, "b": 2}, {"a": 0.1})


def test_resampling_is_exact_seeded_nested_and_repeats():
    pools = {"x": [f"x{i}" for i in range(10)], "y": [f"y{i}" for i in range(4)]}
    volumes = {"x": 7, "y": 11}
    entries = mixture_entries(pools, volumes, seed=5)
    assert Counter(d for _, _, d in entries) == volumes
    assert entries == mixture_entries(pools, volumes, seed=5)
    assert entries != mixture_entries(pools, volumes, seed=6)
    ids = [e[0] for e in entries]
    assert len(set(ids)) == len(ids)
    counts = entry_counts(entries)
    assert all(counts[f"y{i}"] in (2, 3) for i in range(4))  # 11 over 4: as even as possible
    assert {i for i in ids if "#r" in i} == {f"y{i}#r2" for i in range(4)} | {
        i for i in ids if i.endswith("#r3")}
    assert len({c for _, c, d in entries if d == "x"}) == 7  # down-sampling: no repeats
    smaller = mixture_entries(pools, {"x": 5, "y": 11}, seed=5)
    assert {e[0] for e in smaller} <= set(ids)  # rounds shrink by dropping, not by redrawing


# ------------------------------------------------------------------------------------------
# Domains, settings and the recipe


def test_domain_labels_field_mapping_and_reference(tmp_path):
    from instruct_select.ideal.domains import domain_labels, group_by_domain, load_domain_map, reference_examples

    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    examples = [Example("1", "gsm8k", msgs, record={"domain": "math"}), Example("2", "gsm8k", msgs, record={}),
                Example("3", "mbpp", msgs, record={})]
    assert domain_labels(examples) == {"1": "math", "2": "gsm8k", "3": "mbpp"}
    assert domain_labels(examples, {"math": "m", "gsm8k": "m", "*": "rest"}) == {"1": "m", "2": "m", "3": "rest"}
    with pytest.raises(ConfigError, match="mbpp"):
        domain_labels(examples, {"math": "m", "gsm8k": "m"})
    (tmp_path / "map.yaml").write_text("gsm8k: math\nmbpp: code\n")
    (tmp_path / "map.json").write_text('{"gsm8k": "math"}')
    assert load_domain_map(path=tmp_path / "map.yaml") == {"gsm8k": "math", "mbpp": "code"}
    assert load_domain_map(path=tmp_path / "map.json") == {"gsm8k": "math"}
    (tmp_path / "bad.json").write_text('["gsm8k"]')
    with pytest.raises(ConfigError, match="mapping of label to domain"):
        load_domain_map(path=tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="two or more"):
        group_by_domain({"1": "m", "2": "m"})
    ref = tmp_path / "ref"
    ref.mkdir()
    for task, n in (("t1", 5), ("t2", 3)):
        (ref / f"{task}.jsonl").write_text("".join(json.dumps({"id": f"{task}-{i}", "messages": msgs}) + "\n"
                                                   for i in range(n)))
    chosen = reference_examples(ref, size=5, seed=0)
    assert Counter(e.id.split("-")[0] for e in chosen) == {"t1": 3, "t2": 2}
    assert chosen == reference_examples(ref, size=5, seed=0)
    assert len(reference_examples(ref, tasks=["t2"])) == 3


def test_settings_are_checked():
    from instruct_select.ideal.settings import IdealSettings

    for bad, match in (({"m": 1.5}, "m must"), ({"fisher": "true"}, "fisher"), ({"rounds": 0}, "rounds"),
                       ({"layers": []}, "layers"), ({"domain_map": {"a": "b"}, "domain_map_file": "x"}, "not both")):
        with pytest.raises(ConfigError, match=match):
            IdealSettings(**bad)
    with pytest.raises(ConfigError, match="match no linear layer"):
        kfac.select_layers(BigramMLP(), ["gate_proj"])


def test_recipe_validates_with_the_papers_settings(tmp_path):
    from instruct_select.ideal import load_ideal_config

    paths, settings = load_ideal_config(CONFIG)
    assert paths.model == "meta-llama/Llama-3.1-8B"
    assert (settings.rounds, settings.m) == (2, 0.15)
    assert settings.layers == ["gate_proj", "up_proj", "down_proj"] and settings.ekfac
    assert settings.damping > 0 and settings.reference_size == 500 and settings.dtype == "bfloat16"
    assert sorted(set(settings.domain_map.values())) == ["code", "instruction_following", "math", "reasoning"]
    _, changed = load_ideal_config(CONFIG, ["m=0.3", "train.epochs=1"])
    assert changed.m == 0.3 and changed.train.epochs == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.read_text() + "mm: 1\n")
    with pytest.raises(ConfigError, match="mm"):
        load_ideal_config(bad)


# ------------------------------------------------------------------------------------------
# End to end


def test_run_ideal_one_round_on_the_tiny_lab(tiny_lab, tmp_path):
    from instruct_select.data.loading import load_examples
    from instruct_select.ideal import IdealSettings
    from instruct_select.run.ideal_rounds import mixture_for_selection, run_ideal
    from instruct_select.lab.presets import lab_eval_settings, lab_train_settings

    train = lab_train_settings(epochs=1, token_budget=2048, save_checkpoints=False)
    settings = IdealSettings(rounds=1, device="cpu", train=train, eval=lab_eval_settings(),
                             stats_token_budget=8192, fit_examples=120, reference_size=10)
    result = run_ideal(tiny_lab.pool, tiny_lab.validation, tiny_lab.model("small"), tmp_path, settings,
                       tests=tiny_lab.test)
    (round_1,) = result["rounds"]
    folder = tmp_path / "ideal" / "round-1"
    volumes = json.loads((folder / "volumes.json").read_text())
    assert set(volumes["before"]) == {"code", "math", "logic", "knowledge", "format"}
    assert volumes["after"] == round_1["volumes"]["after"] != volumes["before"]
    assert json.loads((folder / "influences.json").read_text())["influences"] == round_1["influences"]
    assert round_1["metrics"]["summary"]["n_capabilities"] == 5
    assert result["final"]["metrics"]["summary"]["n_capabilities"] == 5
    assert result["final"]["mixture"] == round_1["mixture"]
    mixture = load_examples(mixture_for_selection(tmp_path))  # loads back as a pool: unique ids
    assert Counter(e.task for e in mixture.examples) == volumes["after"]
    original = load_examples(tiny_lab.pool).by_id()
    for example in mixture.examples:  # every record is its source's, repeats renamed only
        source = example.id.split("#r")[0]
        assert {**example.record, "id": source} == original[source].record
    assert any("#r2" in e.id for e in mixture.examples)  # the growing domain repeats examples
    again = run_ideal(tiny_lab.pool, tiny_lab.validation, tiny_lab.model("small"), tmp_path, settings,
                      tests=tiny_lab.test)
    assert again["rounds"][0]["influences"] == round_1["influences"]  # cached and identical
