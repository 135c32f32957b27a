"""DSD on stock MONAI networks through hooks: tap shapes, loss, eval mode, export."""
import pytest
import torch

from plugins.core.checkpoint import export_state_dict
from plugins.core.taps import MissingModuleError
from plugins.dsd import DSDLoss, DSDTaps
from plugins.dsd.functional import dice_ce

C = 3


def _nets():
    from monai.networks.nets import UNETR, DynUNet, SwinUNETR, UNet, VNet
    return {
        'dynunet': (lambda: DynUNet(
            3,
            1,
            C,
            kernel_size=[3] * 5,
            strides=[1, 2, 2, 2, 2],
            upsample_kernel_size=[2, 2, 2, 2],
            filters=[4, 8, 16, 32, 40],
            res_block=True,
            norm_name='instance'), 32),
        'unet': (lambda: UNet(3, 1, C, channels=(4, 8, 16, 32, 40), strides=(2, 2, 2, 2)), 32),
        'unetr': (lambda: UNETR(
            1,
            C,
            img_size=32,
            feature_size=4,
            hidden_size=48,
            mlp_dim=96,
            num_heads=4,
            proj_type='perceptron',
            norm_name='instance',
            res_block=True), 32),
        'swinunetr':
        (lambda: SwinUNETR(in_channels=1, out_channels=C, feature_size=12, spatial_dims=3), 64),
        'vnet': (lambda: VNet(spatial_dims=3, in_channels=1, out_channels=C), 32),
    }


# expected (channels, scale) per slot, from the spec's tap tables
EXPECTED = {
    'dynunet':
    dict(
        enc1=(4, 1),
        enc2=(8, 2),
        enc3=(16, 4),
        enc4=(32, 8),
        dec4=(40, 16),
        dec3=(32, 8),
        dec2=(16, 4),
        dec1=(8, 2)),
    'unet':
    dict(
        enc1=(4, 2),
        enc2=(8, 4),
        enc3=(16, 8),
        enc4=(32, 16),
        dec4=(40, 16),
        dec3=(16, 8),
        dec2=(8, 4),
        dec1=(4, 2)),
    'unetr':
    dict(
        enc1=(4, 1),
        enc2=(8, 2),
        enc3=(16, 4),
        enc4=(32, 8),
        dec4=(48, 16),
        dec3=(32, 8),
        dec2=(16, 4),
        dec1=(8, 2)),
    'swinunetr':
    dict(
        enc1=(12, 1),
        enc2=(12, 2),
        enc3=(24, 4),
        enc4=(48, 8),
        dec4=(96, 16),
        dec3=(48, 8),
        dec2=(24, 4),
        dec1=(12, 2)),
    'vnet':
    dict(
        enc1=(16, 1),
        enc2=(32, 2),
        enc3=(64, 4),
        enc4=(128, 8),
        dec4=(256, 16),
        dec3=(256, 8),
        dec2=(128, 4),
        dec1=(64, 2)),
}


@pytest.fixture(params=sorted(EXPECTED))
def wrapped(request):
    torch.manual_seed(0)
    make, size = _nets()[request.param]
    net = make()
    return request.param, net, DSDTaps(net, request.param, num_classes=C), size


def test_tap_tables_match_the_spec(wrapped):
    name, net, taps, size = wrapped
    got = {s: (i.channels, i.scale) for s, i in taps.info.items()}
    assert got == EXPECTED[name]
    shared = name not in ('unetr', 'vnet')
    assert (len(net.dsd_heads) < 8) == shared


def test_training_forward_records_full_res_logits_and_loss_backprops(wrapped):
    name, net, taps, size = wrapped
    net.train()
    x = torch.randn(1, 1, size, size, size)
    y = torch.randint(0, C, (1, 1, size, size, size))
    out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, C, size, size, size)
    loss_fn = DSDLoss(taps, temperature=3.0)
    loss = loss_fn(out, y)
    assert torch.isfinite(loss) and len(loss_fn.last_terms) == 11
    loss.backward()
    for key, head in net.dsd_heads.items():
        assert head.conv.weight.grad is not None and head.conv.weight.grad.abs().sum() > 0, key
    with pytest.raises(KeyError, match='train mode'):
        loss_fn(out, y)  # the store was consumed


def test_eval_mode_is_the_stock_network_and_export_loads_strictly(wrapped):
    name, net, taps, size = wrapped
    make, _ = _nets()[name]
    net.eval()
    x = torch.randn(1, 1, size, size, size)
    calls = []
    hook = net.dsd_heads[next(iter(
        net.dsd_heads))].register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        out = net(x)
    hook.remove()
    assert not calls  # no head runs at inference
    state, dropped = export_state_dict(net)
    assert dropped and all(k.startswith('dsd_heads.') for k in dropped)
    stock = make()
    stock.load_state_dict(state, strict=True)
    stock.eval()
    with torch.no_grad():
        assert torch.equal(stock(x), out)
    y = torch.randint(0, C, (1, 1, size, size, size))
    dice, ce = dice_ce(out, y)
    assert DSDLoss(taps)(out, y).item() == pytest.approx((dice + ce).item())


def test_errors_are_named():
    from monai.networks.nets import DynUNet
    make, _ = _nets()['dynunet']
    with pytest.raises(ValueError, match='unknown DSD preset'):
        DSDTaps(make(), 'vnet2')
    with pytest.raises(ValueError, match='num_classes=5'):
        DSDTaps(make(), 'dynunet', num_classes=5)
    with pytest.raises(MissingModuleError, match='downsamples.2'):
        shallow = DynUNet(
            3,
            1,
            C,
            kernel_size=[3] * 4,
            strides=[1, 2, 2, 2],
            upsample_kernel_size=[2, 2, 2],
            filters=[4, 8, 16, 32])
        DSDTaps(shallow, 'dynunet')


def _run(make, name, size, mode, dtype):
    torch.manual_seed(0)
    net = make().to(dtype)
    taps = DSDTaps(net, name, num_classes=C, mode=mode)
    net.train()
    torch.manual_seed(1)
    x = torch.randn(2, 1, size, size, size, dtype=dtype)
    y = torch.randint(0, C, (2, 1, size, size, size))
    loss_fn = DSDLoss(taps, temperature=3.0)
    loss = loss_fn(net(x), y)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    return loss.detach(), dict(loss_fn.last_terms), grads


@pytest.mark.parametrize('name', ['dynunet', 'unetr'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_lean_mode_equals_straightforward_loss_and_gradients(name, dtype):
    make, size = _nets()[name]
    l0, t0, g0 = _run(make, name, size, 'straightforward', dtype)
    l1, t1, g1 = _run(make, name, size, 'lean', dtype)
    # values: the same maths, summed in another voxel order
    rel = 1e-12 if dtype == torch.float64 else 1e-6
    assert l1.item() == pytest.approx(l0.item(), rel=rel)
    for k in t0:
        assert t1[k].item() == pytest.approx(t0[k].item(), rel=rel, abs=rel * 1e-2), k
    assert set(g0) == set(g1) and any(k.startswith('dsd_heads.') for k in g0)
    top = max(g.abs().max() for g in g0.values())
    for k in g0:  # only the summation order of the gradients differs
        diff = (g0[k] - g1[k]).abs().max()
        if dtype == torch.float64:
            assert diff <= 1e-10 * max(g0[k].abs().max(), 1e-30) + 1e-15, k
        else:
            assert diff <= 1e-5 * top, k


def test_bad_mode():
    make, _ = _nets()['dynunet']
    with pytest.raises(ValueError, match="strategy must be one of"):
        DSDTaps(make(), 'dynunet', mode='cheap')
    with pytest.raises(ValueError, match="strategy must be one of"):
        DSDLoss(DSDTaps(make(), 'dynunet'), strategy='cheap')


def test_the_loss_strategy_sets_what_the_taps_record():
    """``DSDLoss(strategy=...)`` switches taps built in the other mode: the
    lean loss from straightforward taps equals the straightforward loss."""
    make, size = _nets()['dynunet']
    torch.manual_seed(1)
    x = torch.randn(1, 1, size, size, size)
    y = torch.randint(0, C, (1, 1, size, size, size))
    values = {}
    for strategy in ('straightforward', 'lean'):
        torch.manual_seed(0)
        net = make()
        taps = DSDTaps(net, 'dynunet', num_classes=C)  # records logits
        loss_fn = DSDLoss(taps, strategy=strategy)
        assert taps.mode == loss_fn.strategy == strategy
        net.train()
        loss = loss_fn(net(x), y)
        loss.backward()
        values[strategy] = (loss.item(), net.dsd_heads['L0'].conv.weight.grad.clone())
        recorded = None
        net(x)
        recorded = taps.pop_logits()['enc1']
        assert recorded.shape[1] == (
            C if strategy == 'straightforward' else taps.info['enc1'].channels)
    assert values['lean'][0] == pytest.approx(values['straightforward'][0], rel=1e-6)
    torch.testing.assert_close(
        values['lean'][1], values['straightforward'][1], rtol=1e-4, atol=1e-7)


def test_indivisible_spatial_size_is_a_clear_error():
    make, _ = _nets()['dynunet']
    net = make()
    DSDTaps(net, 'dynunet', num_classes=C)
    net.train()
    with pytest.raises(ValueError, match=r'divisible by 16.*\(1, 1, 24, 32, 32\)'):
        net(torch.randn(1, 1, 24, 32, 32))
    net.eval()  # inference is the stock network's business: no check there
    with torch.no_grad():
        assert net(torch.randn(1, 1, 32, 32, 32)).shape == (1, C, 32, 32, 32)


def test_autocast_loss_is_float32_and_close_to_full_precision():
    make, size = _nets()['dynunet']
    torch.manual_seed(0)
    net = make()
    taps = DSDTaps(net, 'dynunet', num_classes=C)
    net.train()
    x = torch.randn(1, 1, size, size, size)
    y = torch.randint(0, C, (1, 1, size, size, size))
    loss_fn = DSDLoss(taps)
    full = loss_fn(net(x), y)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = net(x)
        mixed = loss_fn(out, y)
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed)
    assert mixed.item() == pytest.approx(full.item(), rel=0.05)
    mixed.backward()


def _lean_pair(options, seed=0):
    from plugins.dsd.functional import dsd_loss
    from plugins.dsd.lean import dsd_loss_lean
    from plugins.dsd.models.heads import DSDHead
    torch.manual_seed(seed)
    scales = dict(enc1=1, enc2=2, enc3=4, enc4=8, dec4=16, dec3=8, dec2=4, dec1=2)
    heads = {s: DSDHead(3, C, k, spatial_dims=2).double() for s, k in scales.items()}
    heads['dec3'] = heads['enc4']  # a shared head accumulates both gradients
    feats = {
        s: torch.randn(2, 3, 32 // k, 32 // k, dtype=torch.float64, requires_grad=True)
        for s, k in scales.items()
    }
    main = torch.randn(2, C, 32, 32, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, C, (2, 1, 32, 32))
    if options.get('ignore_index') is not None:
        y[:, :, :5] = options['ignore_index']  # a padded frame, as mmseg's
        y[1, :, :, -3:] = options['ignore_index']
    params = [p for h in {id(h): h for h in heads.values()}.values() for p in h.parameters()]
    leaves = [main, *feats.values(), *params]

    def grads(total):
        return torch.autograd.grad(total, leaves, allow_unused=True)

    logits = {'main': main, **{s: heads[s](f) for s, f in feats.items()}}
    ref, ref_terms = dsd_loss(logits, y, **options)
    lean, lean_terms = dsd_loss_lean(main, feats, heads, y, **options)
    return ref, ref_terms, grads(ref), lean, lean_terms, leaves


@pytest.mark.parametrize('options', [
    dict(alpha=0.0),
    dict(alpha=2.5, temperature=1.5),
    dict(detach_teacher=True),
    dict(encoder_kd=False),
    dict(ignore_index=255),
    dict(ignore_index=255, detach_teacher=True, encoder_kd=False)
])
def test_lean_equals_straightforward_for_every_option(options):
    ref, ref_terms, ref_grads, lean, lean_terms, leaves = _lean_pair(options)
    torch.testing.assert_close(lean, ref, rtol=1e-12, atol=1e-14)
    assert ref_terms.keys() == lean_terms.keys()
    for k in ref_terms:
        torch.testing.assert_close(lean_terms[k], ref_terms[k], rtol=1e-12, atol=1e-14)
    got = torch.autograd.grad(3.0 * lean, leaves, allow_unused=True)  # any positive multiple
    for a, b in zip(ref_grads, got):
        if a is None:
            assert b is None or not b.abs().any()
            continue
        torch.testing.assert_close(3.0 * a, b, rtol=1e-9, atol=1e-12)


def test_a_second_backward_through_a_retained_graph_is_refused_not_silent():
    """The lean path hands its gradient buffers to autograd once. A second
    ``backward`` through the retained graph used to add nothing; it now stops
    with the fix, and the gradients of the first stay right."""
    _, _, ref_grads, lean, _, leaves = _lean_pair(dict(alpha=1.5))
    lean.backward(retain_graph=True)
    checked = 0
    for leaf, r in zip(leaves, ref_grads):
        if r is not None:
            torch.testing.assert_close(leaf.grad, r, rtol=1e-9, atol=1e-12)
            checked += 1
    assert checked > 20  # main, the features and the heads' parameters
    with pytest.raises(RuntimeError, match="already back-propagated.*strategy='straightforward'"):
        lean.backward()


def test_lean_refuses_a_reweighted_backward():
    from plugins.dsd.lean import dsd_loss_lean
    from plugins.dsd.models.heads import DSDHead
    scales = dict(enc1=1, enc2=2, enc3=4, enc4=8, dec4=16, dec3=8, dec2=4, dec1=2)
    heads = {s: DSDHead(3, C, k, spatial_dims=2) for s, k in scales.items()}
    feats = {s: torch.randn(1, 3, 32 // k, 32 // k, requires_grad=True) for s, k in scales.items()}
    main = torch.randn(1, C, 32, 32, requires_grad=True)
    total, _ = dsd_loss_lean(main, feats, heads, torch.randint(0, C, (1, 1, 32, 32)))
    terms_node = total.grad_fn
    # back-propagating one term alone would need other gradients than the ones formed
    values = None
    stack = [terms_node]
    while stack and values is None:
        node = stack.pop()
        for nxt, _ in node.next_functions:
            if nxt is not None and type(nxt).__name__ == '_LeanDSDBackward':
                values = nxt
            elif nxt is not None:
                stack.append(nxt)
    assert values is not None
    with pytest.raises(RuntimeError, match='must enter the loss with their DSD weights'):
        values.apply(torch.tensor([1.0] + [0.0] * 9))


def test_lean_under_autocast_matches_straightforward_closely():
    make, size = _nets()['dynunet']
    results = []
    for mode in ('straightforward', 'lean'):
        torch.manual_seed(0)
        net = make()
        loss_fn = DSDLoss(DSDTaps(net, 'dynunet', num_classes=C, mode=mode))
        net.train()
        torch.manual_seed(1)
        x = torch.randn(1, 1, size, size, size)
        y = torch.randint(0, C, (1, 1, size, size, size))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            loss = loss_fn(net(x), y)
        loss.backward()
        assert loss.dtype == torch.float32
        results.append((loss.detach(), net.dsd_heads['L0'].conv.weight.grad.clone()))
    (l0, g0), (l1, g1) = results
    # the straightforward heads run in bfloat16 under autocast, the lean node's
    # last up-sampling and terms in float32
    assert l1.item() == pytest.approx(l0.item(), rel=1e-2)
    torch.testing.assert_close(g0, g1, rtol=0.05, atol=1e-3 * g0.abs().max().item())


def test_lean_with_every_voxel_ignored_is_zero_not_nan():
    from plugins.dsd.functional import dsd_loss
    from plugins.dsd.lean import dsd_loss_lean
    from plugins.dsd.models.heads import DSDHead
    scales = dict(enc1=1, enc2=2, enc3=4, enc4=8, dec4=16, dec3=8, dec2=4, dec1=2)
    heads = {s: DSDHead(3, C, k, spatial_dims=2) for s, k in scales.items()}
    feats = {s: torch.randn(1, 3, 32 // k, 32 // k, requires_grad=True) for s, k in scales.items()}
    main = torch.randn(1, C, 32, 32, requires_grad=True)
    y = torch.full((1, 1, 32, 32), 255)
    lean, terms = dsd_loss_lean(main, feats, heads, y, ignore_index=255)
    ref, _ = dsd_loss({
        'main': main,
        **{
            s: heads[s](f)
            for s, f in feats.items()
        }
    },
                      y,
                      ignore_index=255)
    assert lean.item() == 0.0 == ref.item() and all(v.item() == 0.0 for v in terms.values())
    lean.backward()
    assert all(f.grad is not None and not f.grad.abs().any() for f in feats.values())


@pytest.mark.parametrize('mode', ['straightforward', 'lean'])
def test_vnet_training_forward_draws_the_stock_networks_dropout(mode):
    """VNet's up_tr64 / up_tr32 always drop out their skip in train mode; the
    taps and heads draw no random numbers, so with one seed the hooked
    network's output equals the stock network's."""
    make, size = _nets()['vnet']
    torch.manual_seed(0)
    net = make()
    stock = make()
    stock.load_state_dict(net.state_dict())
    DSDTaps(net, 'vnet', num_classes=C, mode=mode)
    net.train()
    stock.train()
    x = torch.randn(2, 1, size, size, size)
    torch.manual_seed(5)
    hooked = net(x)
    torch.manual_seed(5)
    plain = stock(x)
    torch.manual_seed(6)
    other = stock(x)
    assert torch.equal(hooked, plain)
    assert not torch.equal(plain, other)  # the dropout is live
