"""MACIL-SD networks: released key layout, parameter counts, forward rules, loss."""
import pytest
import torch

from plugins.macil import MACILAudioVisual, MACILVisualTeacher, macil_loss
from plugins.macil.functional import ema_update_, mil_bag_scores, sequence_lengths

# the released checkpoint's 38 keys and shapes
RELEASED = {}
for prefix in ('multiheadattn', 'cma.layer.self_attn'):
    for i in range(4):
        RELEASED[f'{prefix}.linears.{i}.weight'] = (128, 128)
        RELEASED[f'{prefix}.linears.{i}.bias'] = (128, )
    RELEASED[f'{prefix}.layer_norm.weight'] = (128, )
    RELEASED[f'{prefix}.layer_norm.bias'] = (128, )
for prefix in ('feedforward', 'cma.layer.feed_forward'):
    for w in ('w_1', 'w_2'):
        RELEASED[f'{prefix}.{w}.weight'] = (128, 128)
        RELEASED[f'{prefix}.{w}.bias'] = (128, )
RELEASED.update({
    'fc_v.weight': (128, 1024),
    'fc_v.bias': (128, ),
    'fc_a.weight': (128, 128),
    'fc_a.bias': (128, ),
    'att_mmil.fc.weight': (1, 128),
    'att_mmil.fc.bias': (1, )
})
for i in range(2):
    RELEASED[f'cma.layer.sublayer.{i}.norm.weight'] = (128, )
    RELEASED[f'cma.layer.sublayer.{i}.norm.bias'] = (128, )


def test_released_layout_loads_strictly_and_counts_match(tmp_path):
    assert len(RELEASED) == 38
    torch.manual_seed(0)
    state = {k: torch.randn(shape) for k, shape in RELEASED.items()}
    path = tmp_path / 'macil_sd.pkl'
    torch.save(state, path)
    av = MACILAudioVisual()
    av.load_state_dict(torch.load(path, weights_only=True), strict=True)
    assert torch.equal(av.fc_v.weight, state['fc_v.weight'])
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    teacher = MACILVisualTeacher()
    assert (count(av), count(teacher), count(av) + count(teacher)) == (347009, 330497, 677506)
    want_teacher = {('fc' + k[len('att_mmil.fc'):]) if k.startswith('att_mmil.fc') else k
                    for k in RELEASED if not k.startswith('fc_a')}
    assert set(teacher.state_dict()) == want_teacher


def test_forward_rules_in_eval_mode():
    torch.manual_seed(0)
    av = MACILAudioVisual().eval()
    v, a = torch.rand(2, 7, 1024), torch.randn(2, 7, 128)
    out = av(v, a)
    h_v, h_a = av.fc_v(v), av.fc_a(a)
    layer = av.cma.layer
    z_v = layer(h_v, h_a)
    # pre-LN on the query only, shared layer both ways, shared scorer (bias twice)
    q = layer.sublayer[0].norm(h_v)
    u = h_v + layer.self_attn(q, h_a, h_a)
    torch.testing.assert_close(out['feat_v'], u + layer.feed_forward(layer.sublayer[1].norm(u)))
    torch.testing.assert_close(out['feat_v'], z_v)
    torch.testing.assert_close(out['feat_a'], layer(h_a, h_v))
    s = av.att_mmil.fc(out['feat_a'])[..., 0] + av.att_mmil.fc(out['feat_v'])[..., 0]
    torch.testing.assert_close(out['logits'], s)
    torch.testing.assert_close(out['prob_v'], torch.sigmoid(out['logits_v']))
    # batch 1 and T = 1 keep their axes
    one = av(v[:1, :1], a[:1, :1])
    assert one['logits'].shape == (1, 1) and one['feat_a'].shape == (1, 1, 128)
    with pytest.raises(ValueError, match='must share B and T'):
        av(v, a[:, :6])


def test_attention_matches_torch_multihead_attention():
    torch.manual_seed(1)
    mha = MACILAudioVisual().cma.layer.self_attn.eval()
    ref = torch.nn.MultiheadAttention(128, 4, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mha.linears[i].weight for i in range(3)]))
        ref.in_proj_bias.copy_(torch.cat([mha.linears[i].bias for i in range(3)]))
        ref.out_proj.weight.copy_(mha.linears[3].weight)
        ref.out_proj.bias.copy_(mha.linears[3].bias)
    q, c = torch.randn(2, 5, 128), torch.randn(2, 9, 128)
    torch.testing.assert_close(mha(q, c, c), ref(q, c, c, need_weights=False)[0])
    keep = torch.arange(9)[None, :] < torch.tensor([[6], [9]])
    torch.testing.assert_close(
        mha(q, c, c, keep),
        ref(q, c, c, key_padding_mask=~keep, need_weights=False)[0])
    # every key masked: uniform attention, as if unmasked with equal scores (no NaN)
    none = mha(q, c, c, torch.zeros(2, 9, dtype=torch.bool))
    mean_v = mha.linears[3](mha.linears[2](c).mean(1, keepdim=True)).expand(2, 5, 128)
    torch.testing.assert_close(none, mean_v)


@pytest.mark.parametrize('net', ['av', 'teacher'])
def test_masked_padding_option_makes_valid_snippets_independent_of_padding(net):
    """With ``mask_padding`` a padded video's real snippets score exactly as
    the same video cut to its length; the default (the reference) lets the
    padded rows in as keys."""
    torch.manual_seed(4)
    make = MACILAudioVisual if net == 'av' else MACILVisualTeacher
    masked, plain = make(mask_padding=True).eval(), make().eval()
    plain.load_state_dict(masked.state_dict())  # the option adds no parameter
    v, a = torch.rand(2, 12, 1024), torch.randn(2, 12, 128)
    v[0, 7:] = 0.0
    a[0, 7:] = 0.0
    with torch.no_grad():
        padded = masked(v, a)['logits']
        cut = masked(v[:1, :7], a[:1, :7])['logits']
        by_lengths = masked(v, a, lengths=torch.tensor([7, 12]))['logits']
        reference = plain(v, a)['logits']
        reference_cut = plain(v[:1, :7], a[:1, :7])['logits']
    torch.testing.assert_close(padded[0, :7], cut[0])
    torch.testing.assert_close(by_lengths, padded)
    torch.testing.assert_close(reference[1], padded[1])  # an unpadded video is unchanged
    assert not torch.allclose(reference[0, :7], reference_cut[0])
    with pytest.raises(ValueError, match=r'lengths must be \(2,\)'):
        masked(v, a, lengths=torch.tensor([7]))


def test_loss_assembles_terms_and_the_swap_flag_matters():
    torch.manual_seed(2)
    av = MACILAudioVisual().eval()
    v = torch.rand(4, 40, 1024)
    v[2:, 30:] = 0.0  # two shorter videos
    a = torch.randn(4, 40, 128)
    lengths = sequence_lengths(v)
    assert lengths.tolist() == [40, 40, 30, 30]
    out = av(v, a)
    with torch.no_grad():  # force a violent/normal split by prediction
        bag = mil_bag_scores(out['logits'], lengths)
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    shift = torch.where(torch.arange(4) < 2, 5.0 - bag.logit(), -5.0 - bag.logit())
    out['logits'] = out['logits'] + shift[:, None]
    total, terms, degenerate = macil_loss(out, labels, lengths, 0.3, 0.7)
    assert not degenerate and set(terms) == {'mil', 'a2v_a2b', 'a2v_a2n', 'v2a_a2b', 'v2a_a2n'}
    want = (
        terms['mil'] + 0.3 * (terms['a2v_a2b'] + terms['v2a_a2b']) + 0.7 *
        (terms['a2v_a2n'] + terms['v2a_a2n']))
    assert total.item() == pytest.approx(want.item(), rel=1e-6)
    swapped_off, terms_off, _ = macil_loss(out, labels, lengths, 0.3, 0.7, upstream_rep_swap=False)
    assert terms_off['mil'] == terms['mil']
    assert abs(terms_off['a2v_a2b'].item() - terms['a2v_a2b'].item()) > 1e-6


def test_ema_between_the_two_networks_updates_36_of_38_tensors():
    torch.manual_seed(3)
    av, teacher = MACILAudioVisual(), MACILVisualTeacher()
    before = {k: v.clone() for k, v in av.state_dict().items()}
    n = ema_update_(
        av.named_parameters(),
        dict(teacher.named_parameters()),
        0.91,
        skip=('fc_a', ),
        key_map={'att_mmil.fc': 'fc'})
    assert n == 36
    after = av.state_dict()
    assert torch.equal(after['fc_a.weight'], before['fc_a.weight'])
    want = before['cma.layer.feed_forward.w_1.weight'] * 0.91 + \
        teacher.cma.layer.feed_forward.w_1.weight.detach() * (1 - 0.91)
    assert torch.equal(after['cma.layer.feed_forward.w_1.weight'], want)


def test_loss_modules_equal_the_functional_loss():
    from plugins.macil.functional import weighted_total
    from plugins.macil.losses import SemiBagContrastiveLoss, TopKMILLoss
    torch.manual_seed(4)
    av = MACILAudioVisual().eval()
    v, a = torch.rand(4, 24, 1024), torch.randn(4, 24, 128)
    lengths = sequence_lengths(v)
    out = av(v, a)
    out['logits'] = out['logits'] + torch.tensor([6.0, -6.0, 6.0, -6.0])[:, None]
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    total, terms, _ = macil_loss(out, labels, lengths, 0.4, 0.9, upstream_rep_swap=False)
    mil, bag = TopKMILLoss()(out['logits'], labels, lengths)
    contrast, degenerate = SemiBagContrastiveLoss(upstream_rep_swap=False)(out, bag, lengths)
    assert not degenerate and torch.equal(mil, terms['mil'])
    assert torch.equal(weighted_total(mil, contrast, 0.4, 0.9), total)
