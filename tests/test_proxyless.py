"""ProxylessNAS: the binary gates on a supernet's slots checked by hand, Eq. (6)'s term, the searcher's loop on
tiny supernets of every one-choice-per-slot space, and the derived architecture inside a cost window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_supernet_spec

from tune_spacenas.jobs import ProxylessJob, train_job
from tune_spacenas.runner import InProcessSupernet, run_in_process
from tune_spacenas.searchers import ProxylessSearcher, RandomSearcher
from tune_spacenas.spaces import IRBSpace, MultiBranchSpace, OpenCellSpace
from tune_spacenas.spaces.cells import REFERENCE_IRB
from tune_spacenas.supernet import build_supernet
from tune_spacenas.supernet.gates import BinaryGates, SlotGates, fitness_gradient

PLAN = dict(widths=(8, 16), strides=(1, 2), stem_channels=8, input_size=8)


def _with(arch, slot, op):
    return arch[:slot] + (op,) + arch[slot + 1 :]


@pytest.mark.parametrize("space", [IRBSpace(**PLAN), OpenCellSpace(**PLAN)], ids=["one slot per layer", "eight"])
def test_each_gate_gradient_is_the_layer_output_under_its_candidate_times_dl_dy(space):
    """ProxylessNAS: ``dL/dg_k = <dL/dy, y(arch with slot s on candidate k)>`` at the layer that decides s."""
    torch.manual_seed(0)
    net = build_supernet(space).eval()
    x = torch.randn(4, 3, 8, 8)
    gates = SlotGates(space.choices, [[0.0] * len(c) for c in space.choices])
    net.gates = gates
    active = gates.sample(np.random.default_rng(1))
    stem = net.stem(x)
    y0 = stem.detach().requires_grad_(True)
    layer_out = net.run_layer(0, y0, active)
    logits = net.classifier(net.run_layer(1, layer_out, active).mean(dim=(2, 3)))
    (dl_dy,) = torch.autograd.grad(logits.sum(), layer_out)
    net(x, active).sum().backward()
    for s in net.layer_slots(0):
        g = gates.slots[s]
        if g.gates is None:
            continue
        with torch.no_grad():
            expected = [
                float((dl_dy * net.run_layer(0, stem, _with(active, s, space.choices[s][k]))).sum()) for k in g.paths
            ]
        assert np.allclose(g.gates.grad.numpy(), expected, rtol=1e-4, atol=1e-4)
    # Weight steps draw their path from p: a slot certain of one operation always gets it.
    peaked = [[0.0] * len(c) for c in space.choices]
    peaked[0][-1] = 50.0
    net.gates = SlotGates(space.choices, peaked)
    assert all(net.sample_path(space, np.random.default_rng(i))[0] == space.choices[0][-1] for i in range(20))


def test_rescaling_keeps_the_unsampled_probabilities_and_the_update_follows_the_formula():
    gates = BinaryGates([0.2, -0.1, 0.4], gate_paths=2)
    gates.sample(np.random.default_rng(0))
    unsampled = ({0, 1, 2} - set(gates.paths)).pop()
    gates.gates.grad = torch.tensor([0.3, -0.5])
    grad = gates.gradient()
    idx = torch.tensor(gates.paths)
    assert torch.allclose(grad[idx], fitness_gradient(torch.tensor([0.3, -0.5], dtype=torch.float64), gates.alpha[idx]))
    assert grad[unsampled] == 0 and abs(float(grad.sum())) < 1e-12
    before_p = gates.probabilities()[unsampled].item()
    before = gates.alpha.clone()
    gates.alpha[idx] += torch.tensor([0.7, -0.2], dtype=torch.float64)
    gates.rescale(before)
    assert gates.probabilities()[unsampled].item() == pytest.approx(before_p)


def test_an_architecture_step_is_adam_on_the_gate_and_eq6_gradients():
    space = IRBSpace(**PLAN)
    gates = SlotGates(space.choices, [[0.0] * len(c) for c in space.choices])
    adam = torch.optim.Adam(gates.parameters(), lr=0.1, betas=(0.0, 0.999))
    gates.sample(np.random.default_rng(0))
    paths = [list(g.paths) for g in gates.slots]
    for g in gates.gated():
        g.grad = torch.zeros_like(g)  # no loss signal: only Eq. (6)'s expected-MAdds term acts
    madds = [[float(m) for m in np.linspace(1, 2, len(c))] for c in space.choices]
    gates.step(adam, madds_penalty=1.0, madds=madds)
    for alpha, m, idx in zip(gates.alpha(), madds, paths):
        # Eq. (6)'s gradient p_i (MAdds_i - E[MAdds]) at p uniform; Adam's first step (beta1 = 0) is lr * sign.
        grad = (np.array(m) - np.mean(m)) / len(m)
        expected = -0.1 * np.sign(grad)
        # ProxylessNAS's rescaling: the two sampled alphas shift so that their sum of exp stays what it was.
        expected[idx] -= np.log(np.exp(expected[idx]).sum() / len(idx))
        assert np.allclose(alpha, expected, atol=1e-6)
        assert alpha[0] > alpha[-1]  # cheaper operations gain on dearer ones


@pytest.mark.parametrize(
    "space", [IRBSpace(**PLAN), OpenCellSpace(**PLAN), None], ids=["manual", "open", "nasbench201"]
)
def test_the_search_learns_alpha_on_every_one_choice_per_slot_supernet(space):
    spec = tiny_supernet_spec(space) if space is not None else tiny_supernet_spec()
    searcher = ProxylessSearcher(
        space=spec.space,
        metric="loss",
        mode="min",
        warmup_steps=10,
        search_steps=20,
        steps_per_trial=10,
        update_every=2,
        arch_lr=0.05,
        seed=0,
    )
    run_in_process(searcher, InProcessSupernet(spec, "cpu"))
    assert searcher.phase == "finished" and len(searcher.curve) == 3
    assert any(a != 0.0 for slot in searcher.alpha for a in slot)
    assert spec.space.contains(searcher.best_architecture())
    assert np.allclose([sum(p.values()) for p in searcher.probabilities()], 1.0)


def test_eq6_lambda_steers_the_search_to_cheaper_architectures_and_a_window_bounds_the_answer():
    space = IRBSpace(**PLAN)
    runner = InProcessSupernet(tiny_supernet_spec(space), "cpu")
    runner(train_job(20, seed=0))
    found = {}
    for lam in (0.0, 1e-3):
        s = ProxylessSearcher(
            space=space,
            metric="loss",
            mode="min",
            warmup_steps=0,
            search_steps=40,
            steps_per_trial=20,
            update_every=1,
            arch_lr=0.2,
            madds_penalty=lam,
            seed=0,
        )
        run_in_process(s, runner)
        found[lam] = space.cost(space.from_string(s.best_architecture())).madds
    assert found[1e-3] == space.cost_range()[0] < found[0.0]
    low, high = space.cost_range()
    window = (low + 0.45 * (high - low), low + 0.55 * (high - low))
    s.min_madds, s.max_madds = window
    s.check_space()  # the window's constraint, as set_search_properties builds it
    assert window[0] <= space.cost(space.from_string(s.best_architecture())).madds <= window[1]


def test_random_search_draws_only_inside_its_cost_window():
    space = OpenCellSpace(**PLAN)
    reference = space.cost(space.from_cells([REFERENCE_IRB] * 2)).madds
    window = (0.95 * reference, 1.05 * reference)
    searcher = RandomSearcher(space=space, metric="accuracy", mode="max", min_madds=window[0], max_madds=window[1])
    searcher.set_search_properties("accuracy", "max", space.param_space())
    for i in range(10):
        job = searcher.suggest(f"t{i}")
        assert window[0] <= space.cost(space.from_string(job["arch"])).madds <= window[1]


def test_bad_settings_and_spaces_are_clear_errors():
    with pytest.raises(ValueError, match="search_steps"):
        ProxylessSearcher(search_steps=0)
    with pytest.raises(ValueError, match="arch_betas"):
        ProxylessSearcher(arch_betas=(0.0, 1.0))
    with pytest.raises(ValueError, match="one operation per slot"):
        ProxylessSearcher(space=MultiBranchSpace(), metric="loss", mode="min").suggest("t")
    space = IRBSpace(**PLAN)
    runner = InProcessSupernet(tiny_supernet_spec(space), "cpu")
    with pytest.raises(ValueError, match="do not match"):
        runner(train_job(2, space, proxyless=ProxylessJob(alpha=[[0.0]])))
