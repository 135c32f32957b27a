"""DSD from a MONAI bundle config (``_target_``) inside MONAI's SupervisedTrainer."""
import math

import pytest
import torch

pytest.importorskip('monai')


def test_bundle_config_builds_taps_and_loss_and_trains_one_epoch():
    from monai.bundle import ConfigParser
    from monai.data import DataLoader
    config = {
        'network_def': {
            '_target_': 'DynUNet',
            'spatial_dims': 3,
            'in_channels': 1,
            'out_channels': 3,
            'kernel_size': [3, 3, 3, 3, 3],
            'strides': [1, 2, 2, 2, 2],
            'upsample_kernel_size': [2, 2, 2, 2],
            'filters': [4, 8, 16, 32, 40],
            'res_block': True,
            'norm_name': 'instance'
        },
        'dsd': {
            '_target_': 'plugins.dsd.DSDTaps',
            'network': '@network_def',
            'preset': 'dynunet',
            'num_classes': 3
        },
        'loss': {
            '_target_': 'plugins.dsd.DSDLoss',
            'taps': '@dsd',
            'temperature': 3,
            'alpha': 1.0
        },
        'optimizer': {
            '_target_': 'torch.optim.AdamW',
            'params': '$@network_def.parameters()',
            'lr': 1e-3
        },
    }
    parser = ConfigParser(config)
    net = parser.get_parsed_content('network_def')
    loss = parser.get_parsed_content('loss')
    optimizer = parser.get_parsed_content('optimizer')
    assert loss.taps.network is net and hasattr(net, 'dsd_heads')
    # the heads were added before the optimizer was built from network_def.parameters()
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g['params']}
    assert all(id(p) in in_optimizer for p in net.dsd_heads.parameters())

    from monai.engines import SupervisedTrainer
    from monai.inferers import SimpleInferer
    torch.manual_seed(0)
    data = [{
        'image': torch.randn(1, 32, 32, 32),
        'label': torch.randint(0, 3, (1, 32, 32, 32)).float()
    } for _ in range(2)]
    before = net.dsd_heads['L0'].conv.weight.detach().clone()
    trainer = SupervisedTrainer(
        device=torch.device('cpu'),
        max_epochs=1,
        train_data_loader=DataLoader(data, batch_size=2),
        network=net,
        optimizer=optimizer,
        loss_function=loss,
        inferer=SimpleInferer())
    trainer.run()
    out = trainer.state.output[0]
    assert math.isfinite(float(out['loss'])) and out['pred'].shape == (3, 32, 32, 32)
    assert set(loss.last_terms) >= {'ds_main', 'kd_enc1', 'kd_dec4'}
    assert not torch.equal(before, net.dsd_heads['L0'].conv.weight)


NET = {
    '_target_': 'DynUNet',
    'spatial_dims': 3,
    'in_channels': 1,
    'out_channels': 3,
    'kernel_size': [3, 3, 3, 3, 3],
    'strides': [1, 2, 2, 2, 2],
    'upsample_kernel_size': [2, 2, 2, 2],
    'filters': [4, 8, 16, 32, 40],
    'res_block': True,
    'norm_name': 'instance'
}


def _bundle(params: str) -> dict:
    """A bundle whose trainer is resolved by ``monai.bundle run``."""
    return {
        'imports': ['$import torch', '$import plugins.dsd'],
        'device':
        "$torch.device('cpu')",
        'network_def':
        dict(NET),
        'dsd': {
            '_target_': 'plugins.dsd.DSDTaps',
            'network': '@network_def',
            'preset': 'dynunet',
            'num_classes': 3
        },
        'loss': {
            '_target_': 'plugins.dsd.DSDLoss',
            'taps': '@dsd'
        },
        'optimizer': {
            '_target_': 'torch.optim.AdamW',
            'params': params,
            'lr': 1e-2
        },
        'data': ("$[{'image': torch.randn(1, 32, 32, 32), "
                 "'label': torch.randint(0, 3, (1, 32, 32, 32)).float()} for _ in range(3)]"),
        'terms': {
            '_target_': 'plugins.dsd.monai.DSDTermsHandler',
            'loss': '@loss'
        },
        'trainer': {
            '_target_': 'SupervisedTrainer',
            'device': '@device',
            'max_epochs': 1,
            'train_handlers': ['@terms'],
            'train_data_loader': {
                '_target_': 'DataLoader',
                'dataset': '@data',
                'batch_size': 1
            },
            'network': '@network_def',
            'optimizer': '@optimizer',
            'loss_function': '@loss',
            'inferer': {
                '_target_': 'SimpleInferer'
            }
        },
        'initialize': ['$torch.manual_seed(0)'],
        'run': ['$@trainer.run()'],
    }


@pytest.mark.parametrize('params', ['$@dsd.network.parameters()', '$@network_def.parameters()'])
def test_monai_bundle_run_trains_the_heads_or_says_why_not(tmp_path, params):
    """The docs' form (parameters taken through the taps) trains the heads; the
    usual form may build the optimizer before the heads exist: then the run
    stops at the second step with the documented message, never silently."""
    import json

    from monai.bundle import ConfigWorkflow

    from plugins.dsd.models.attach import HeadsNotTrainedError
    path = tmp_path / 'train.json'
    path.write_text(json.dumps(_bundle(params)))
    workflow = ConfigWorkflow(config_file=str(path), workflow_type='train')
    workflow.initialize()
    net = workflow.parser.get_parsed_content('network_def')
    try:
        before = {
            k: v.detach().clone()
            for k, v in workflow.parser.get_parsed_content(
                'dsd').network.dsd_heads.state_dict().items()
        }
        workflow.run()
    except HeadsNotTrainedError as err:
        assert params == '$@network_def.parameters()'
        assert '"params": "$@dsd.network.parameters()"' in str(err)
        return
    after = net.dsd_heads.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)
    metrics = workflow.parser.get_parsed_content('trainer').state.metrics
    assert len([k for k in metrics if k.startswith('dsd_')]) == 11
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith('dsd_'))


def test_an_optimizer_built_before_dsd_fails_at_the_second_step():
    from monai.networks.nets import DynUNet

    from plugins.dsd import DSDLoss, DSDTaps
    from plugins.dsd.models.attach import HeadsNotTrainedError
    torch.manual_seed(0)
    args = {k: v for k, v in NET.items() if k != '_target_'}
    net = DynUNet(**args)
    early = torch.optim.AdamW(net.parameters(), lr=1e-2)  # before the heads exist
    loss_fn = DSDLoss(DSDTaps(net, 'dynunet'))
    x, y = torch.randn(1, 1, 32, 32, 32), torch.randint(0, 3, (1, 1, 32, 32, 32))
    net.train()
    with pytest.raises(HeadsNotTrainedError, match='optimizer does not hold them'):
        for _ in range(3):
            early.zero_grad()
            loss_fn(net(x), y).backward()
            early.step()
    # built after attaching: the heads train and nothing is raised
    net2 = DynUNet(**args)
    loss_fn = DSDLoss(DSDTaps(net2, 'dynunet'))
    late = torch.optim.AdamW(net2.parameters(), lr=1e-2)
    for _ in range(3):
        late.zero_grad()
        loss_fn(net2(x), y).backward()
        late.step()
