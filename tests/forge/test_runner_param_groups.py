import torch
from torch import nn

from forge.runner import param_groups


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.token = nn.Parameter(torch.zeros(1, 1, 4))

    def no_weight_decay(self) -> list[str]:
        return ["token"]


def _names(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_default_exempts_1d_tensors_and_named_keys():
    net = _Net()
    decay, no_decay = param_groups(net, 5e-4, [])
    assert _names(net, decay) == {"conv.weight"} and decay["weight_decay"] == 5e-4
    assert _names(net, no_decay) == {"conv.bias", "bn.weight", "bn.bias", "token"} and no_decay["weight_decay"] == 0


def test_decay_1d_decays_norms_and_biases_as_the_original_yolact():
    net = _Net()
    decay, no_decay = param_groups(net, 5e-4, ["conv.weight"], decay_1d=True)
    assert _names(net, decay) == {"conv.bias", "bn.weight", "bn.bias"}
    assert _names(net, no_decay) == {"conv.weight", "token"}  # named keys and no_weight_decay() still exempt

