import pytest
import torch
from torch import nn

from plugins.core.taps import MissingModuleError, Taps, TapSpec, resolve_module


class Net(nn.Module):
    """A net with a nested block, a module used twice and an alias."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(3, 4)
        self.block = nn.Sequential(nn.ReLU(), nn.Linear(4, 4))
        self.shared = nn.Linear(4, 4)
        self.alias = self.shared  # same module under two names
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.stem(x)
        h = self.block(h)
        h = self.shared(h)
        h = self.shared(h)  # reached twice
        return self.head(h)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return Net()


def test_output_tap_records_the_module_output(net):
    x = torch.randn(5, 3)
    with Taps(net, {'stem': 'stem', 'inner': 'block.1'}) as taps:
        net(x)
        assert torch.equal(taps['stem'], net.stem(x))
        expected = net.block(net.stem(x))
        assert torch.allclose(taps['inner'], expected)
        assert taps['inner'].shape == (5, 4)


def test_input_tap_records_a_positional_input(net):
    x = torch.randn(2, 3)
    with Taps(net, {'head_in': TapSpec('head', what='input')}) as taps:
        out = net(x)
        assert torch.allclose(net.head(taps['head_in']), out)


def test_module_reached_twice(net):
    x = torch.randn(2, 3)
    h = net.block(net.stem(x))
    first = net.shared(h)
    second = net.shared(first)
    with Taps(net, ['shared'], keep='all') as taps:
        net(x)
        values = taps['shared']
        assert len(values) == 2
        assert torch.allclose(values[0], first) and torch.allclose(values[1], second)
    with Taps(net, ['shared'], keep='last') as taps:
        net(x)
        assert torch.allclose(taps['shared'], second)


def test_alias_path_resolves_to_the_same_module(net):
    assert resolve_module(net, 'alias') is net.shared
    with Taps(net, {'a': 'alias'}) as taps:
        net(torch.randn(1, 3))
        assert len(taps) == 1 and 'a' in taps


def test_hooks_are_removed_and_state_dict_is_untouched(net):
    keys = list(net.state_dict())
    taps = Taps(net, ['stem', 'block.1', TapSpec('head', 'input')])
    assert len(net.stem._forward_hooks) == 1 and len(net.head._forward_pre_hooks) == 1
    assert list(net.state_dict()) == keys
    with taps:
        net(torch.randn(1, 3))
    assert not taps.attached
    for m in net.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    with pytest.raises(KeyError, match='recorded nothing'):
        taps['stem']


def test_gradient_flows_through_a_recorded_tensor_unless_detached(net):
    x = torch.randn(4, 3)
    with Taps(net, ['stem']) as taps:
        net(x)
        taps['stem'].sum().backward()
    assert net.stem.weight.grad is not None and net.stem.weight.grad.abs().sum() > 0
    with Taps(net, ['stem'], detach=True) as taps:
        net(x)
        assert taps['stem'].grad_fn is None


def test_transform_and_enable_switch(net):
    with Taps(net, {'s': TapSpec('stem', transform=lambda t: t * 0 + 7)}) as taps:
        net(torch.randn(2, 3))
        assert torch.all(taps['s'] == 7)
        taps.clear()
        taps.enabled = False
        net(torch.randn(2, 3))
        assert 's' not in taps and taps.get('s', 'none') == 'none'


def test_missing_path_names_it_and_lists_close_matches(net):
    with pytest.raises(MissingModuleError) as err:
        Taps(net, ['block.l'])
    msg = str(err.value)
    assert "'block.l'" in msg and 'block.1' in msg
    with pytest.raises(MissingModuleError, match="closest: .*block.0"):
        resolve_module(net, 'block.zzzzzzzz')
    # nothing was attached when validation failed
    assert not any(m._forward_hooks for m in net.modules())


def test_bad_arguments(net):
    with pytest.raises(ValueError, match='keep'):
        Taps(net, ['stem'], keep='first')
    with pytest.raises(ValueError, match='what'):
        TapSpec('stem', what='grad')
    with pytest.raises(ValueError, match='repeat'):
        Taps(net, ['stem', 'stem'])
    with pytest.raises(TypeError):
        Taps(net, {'a': 3})
    with Taps(net, {'x': TapSpec('head', what='input', index=3)}):
        with pytest.raises(IndexError, match='positional inputs'):
            net(torch.randn(1, 3))


def test_empty_batch(net):
    with Taps(net, ['head']) as taps:
        net(torch.randn(0, 3))
        assert taps['head'].shape == (0, 2)
