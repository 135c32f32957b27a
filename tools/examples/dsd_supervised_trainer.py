"""DSD in a MONAI-native training loop (``SupervisedTrainer``), on MSD-format data.

    python tools/examples/dsd_supervised_trainer.py --task data/demo/msd/Task90_Synthetic
    python tools/examples/dsd_supervised_trainer.py --dsd none    # the same net without DSD

The only DSD-specific lines are the two marked below: the network stays the
stock ``DynUNet`` and its output a plain tensor. Prints (and with ``--json``
writes) validation Dice and HD95 (voxels) from sliding-window inference.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', default='data/demo/msd/Task90_Synthetic')
    parser.add_argument(
        '--dsd', choices=['straightforward', 'lean', 'none'], default='straightforward')
    parser.add_argument('--epochs', type=int, default=12)
    parser.add_argument('--crop', type=int, default=32)
    parser.add_argument('--num-val', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='write the metrics here')
    args = parser.parse_args(argv)

    import torch
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedTrainer
    from monai.inferers import SimpleInferer
    from monai.losses import DiceCELoss
    from monai.networks.nets import DynUNet
    from monai.transforms import (Compose, EnsureChannelFirstd, LoadImaged, RandFlipd,
                                  RandSpatialCropd, ScaleIntensityd)
    from monai.utils import set_determinism

    from plugins.dsd import DSDLoss, DSDTaps
    from plugins.dsd.datasets.msd import evaluate_dice_hd95, read_msd_datalist
    from plugins.testing.msd import make_msd_synthetic

    if not os.path.isfile(os.path.join(args.task, 'dataset.json')):
        make_msd_synthetic(os.path.dirname(args.task) or '.', os.path.basename(args.task))
    items = read_msd_datalist(args.task)
    if len(items) <= args.num_val:
        raise ValueError(f'{args.task} has {len(items)} training cases; need more than '
                         f'--num-val={args.num_val}')
    train_items, val_items = items[:-args.num_val], items[-args.num_val:]
    num_classes = len(json.load(open(os.path.join(args.task, 'dataset.json')))['labels'])
    set_determinism(args.seed)
    keys = ['image', 'label']
    load = [LoadImaged(keys), EnsureChannelFirstd(keys), ScaleIntensityd('image')]
    train_tf = Compose(load + [
        RandSpatialCropd(keys, (args.crop, ) * 3, random_size=False),
        RandFlipd(keys, prob=0.5, spatial_axis=0)
    ])
    train_loader = DataLoader(Dataset(train_items, train_tf), batch_size=2, shuffle=True)
    val_loader = DataLoader(Dataset(val_items, Compose(load)), batch_size=1)

    net = DynUNet(
        3,
        1,
        num_classes,
        kernel_size=[3] * 5,
        strides=[1, 2, 2, 2, 2],
        upsample_kernel_size=[2, 2, 2, 2],
        filters=[8, 16, 32, 64, 80],
        res_block=True,
        norm_name='instance')
    if args.dsd == 'none':
        loss = DiceCELoss(include_background=True, to_onehot_y=True, softmax=True)
    else:
        taps = DSDTaps(net, 'dynunet', num_classes)  # DSD line 1
        loss = DSDLoss(taps, temperature=3.0, strategy=args.dsd)  # DSD line 2
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-5)
    trainer = SupervisedTrainer(
        device=torch.device('cpu'),
        max_epochs=args.epochs,
        train_data_loader=train_loader,
        network=net,
        optimizer=optimizer,
        loss_function=loss,
        inferer=SimpleInferer())
    t0 = time.time()
    trainer.run()
    train_s = time.time() - t0
    metrics = evaluate_dice_hd95(net, val_loader, (args.crop, ) * 3, num_classes)
    metrics.update(
        train_s=train_s,
        epochs=args.epochs,
        dsd=args.dsd,
        final_loss=float(trainer.state.output[0]['loss']))
    print(json.dumps(metrics))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(metrics, f)
    return metrics


if __name__ == '__main__':
    main()
