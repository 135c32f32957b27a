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
            '_target_': 'DynUNet', 'spatial_dims': 3, 'in_channels': 1, 'out_channels': 3,
            'kernel_size': [3, 3, 3, 3, 3], 'strides': [1, 2, 2, 2, 2],
            'upsample_kernel_size': [2, 2, 2, 2], 'filters': [4, 8, 16, 32, 40],
            'res_block': True, 'norm_name': 'instance'},
        'dsd': {'_target_': 'plugins.dsd.DSDTaps', 'network': '@network_def',
                'preset': 'dynunet', 'num_classes': 3},
        'loss': {'_target_': 'plugins.dsd.DSDLoss', 'taps': '@dsd', 'temperature': 3,
                 'alpha': 1.0},
        'optimizer': {'_target_': 'torch.optim.AdamW', 'params': '$@network_def.parameters()',
                      'lr': 1e-3},
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
    data = [{'image': torch.randn(1, 32, 32, 32),
             'label': torch.randint(0, 3, (1, 32, 32, 32)).float()} for _ in range(2)]
    before = net.dsd_heads['L0'].conv.weight.detach().clone()
    trainer = SupervisedTrainer(device=torch.device('cpu'), max_epochs=1,
                                train_data_loader=DataLoader(data, batch_size=2),
                                network=net, optimizer=optimizer, loss_function=loss,
                                inferer=SimpleInferer())
    trainer.run()
    out = trainer.state.output[0]
    assert math.isfinite(float(out['loss'])) and out['pred'].shape == (3, 32, 32, 32)
    assert set(loss.last_terms) >= {'ds_main', 'kd_enc1', 'kd_dec4'}
    assert not torch.equal(before, net.dsd_heads['L0'].conv.weight)
