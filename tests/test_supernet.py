import numpy as np
import pytest
import torch

from tune_spacenas.spaces import MobileNetSpace, NASBench201Space
from tune_spacenas.supernet import build_supernet, recalibrate_batchnorm
from tune_spacenas.supernet.ops import build_op


@pytest.mark.parametrize(
    "space,shape",
    [
        (NASBench201Space(channels=8, cells_per_stage=2, input_size=16), (4, 3, 16, 16)),
        (MobileNetSpace(width_mult=0.25, input_size=32, num_classes=10), (2, 3, 32, 32)),
    ],
    ids=["nasbench201", "mobilenet"],
)
def test_a_path_trains_only_its_own_parameters(space, shape):
    net = build_supernet(space)
    rng = np.random.default_rng(0)
    # Random paths, plus one whose every slot holds a parametrised operation (a random NAS-Bench-201
    # cell can cut its output off with 'none' edges, and then no choice receives a gradient).
    convs = tuple(max(range(len(s.ops)), key=lambda o: "conv" in s.ops[o] or "mb_k" in s.ops[o]) for s in space.slots)
    for arch in [space.sample(rng), space.sample(rng), convs]:
        net.zero_grad(set_to_none=True)
        net(torch.randn(*shape), arch).square().sum().backward()
        used = set(net.path_parameter_names(arch))
        for name, p in net.named_parameters():
            if name not in used:
                assert p.grad is None or not p.grad.any(), f"{name} got a gradient outside the path"
    assert all(
        p.grad is not None and p.grad.any()
        for n, p in net.named_parameters()
        if n in set(net.path_parameter_names(convs)) and p.dim() > 1
    )


def test_choice_parameters_partition_the_network():
    space = NASBench201Space(channels=8, cells_per_stage=2)
    net = build_supernet(space)
    owned = [n for s in range(6) for o in range(5) for n in net.choice_parameter_names(s, o)]
    assert len(owned) == len(set(owned))
    assert set(owned) | set(net.shared_parameter_names()) == {n for n, _ in net.named_parameters()}
    assert net.choice_parameter_names(0, 0) == []  # 'none' has no parameters
    # Slot 2, nor_conv_3x3 exists once per cell: two cells per stage, three stages.
    assert len([n for n in net.choice_parameter_names(2, 3) if n.endswith("weight")]) == 6


def test_batchnorm_recalibration_changes_statistics_not_weights():
    space = NASBench201Space(channels=8, cells_per_stage=1)
    net = build_supernet(space)
    arch = (3, 3, 2, 1, 3, 2)
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    bn = net.stem[1]
    before = bn.running_mean.clone()
    batches = [torch.randn(16, 3, 8, 8) * 3 + 1 for _ in range(2)]
    recalibrate_batchnorm(net, lambda x: net(x, arch), batches)
    assert not torch.allclose(bn.running_mean, before)
    assert bn.num_batches_tracked.item() == 2 and not net.training
    assert all(torch.equal(weights[n], p) for n, p in net.named_parameters())
    # Cumulative statistics: the order of the batches does not matter.
    mean = bn.running_mean.clone()
    recalibrate_batchnorm(net, lambda x: net(x, arch), batches[::-1])
    assert torch.allclose(bn.running_mean, mean, atol=1e-6)


def test_unknown_ops_and_spaces_are_clear_errors():
    with pytest.raises(ValueError, match="unknown operation 'conv_9x9'"):
        build_op("conv_9x9", 8, 8)
    from tune_spacenas.spaces import DARTSSpace

    with pytest.raises(ValueError, match="no supernet skeleton"):
        build_supernet(DARTSSpace())


@pytest.mark.parametrize("input_size", [32, 224])
def test_mobilenet_cost_model_counts_what_the_supernet_computes(input_size):
    """MAdds of conv and linear layers on a path, counted by hooks, equal the space's cost model, at
    ImageNet size (stride-2 stem) and CIFAR size (stride-1 stem) alike."""
    space = MobileNetSpace(width_mult=0.35, input_size=input_size, num_classes=10)
    net = build_supernet(space).eval()
    counted = []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            counted.append(k * output.numel())  # batch of one: per image
        else:
            counted.append(module.in_features * module.out_features)

    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(count)
    arch = space.sample(np.random.default_rng(1))
    with torch.no_grad():
        net(torch.randn(1, 3, input_size, input_size), arch)
    assert sum(counted) == pytest.approx(space.cost(arch).madds, rel=0.01)
