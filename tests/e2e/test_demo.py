"""The README's demo command, in its quick form."""
import os
import re

import pytest

from .conftest import python, run

pytestmark = pytest.mark.slow


def test_demo_quick_writes_report_with_map_and_pictures(tmp_path):
    """Every stage: detection, GO-LSD, DSD, MACIL-SD, SLidR."""
    out_dir = str(tmp_path / 'demo')
    log = run(
        [python(), 'tools/demo.py', '--quick', '--out', out_dir, '--data',
         str(tmp_path / 'data')],
        timeout=1500)
    assert 'report:' in log
    report = open(os.path.join(out_dir, 'REPORT.md')).read()
    row = next(line for line in report.splitlines() if line.startswith('| RetinaNet'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert re.fullmatch(r'\d\.\d{3}', cells[4]), row  # bbox mAP is a number
    for png in ('detection_loss.png', 'detection_predictions.png'):
        path = os.path.join(out_dir, png)
        assert os.path.getsize(path) > 5000 and f'({png})' in report
    golsd = [
        line for line in report.splitlines()
        if line.startswith('| DINO') or line.startswith('| FDR only')
    ]
    assert len(golsd) == 6 and 'GO-LSD' in golsd[1] and 'GO-LSD' in golsd[4]
    for line in golsd[:3]:  # mean over the seeds, then each seed's mAP
        cells = [c.strip() for c in line.strip('|').split('|')]
        assert re.fullmatch(r'\d\.\d{3}', cells[4]) and cells[7] == cells[4], line
    for line in golsd[3:]:  # where the top predictions go: TP + kinds of false positive
        cells = [c.strip() for c in line.strip('|').split('|')]
        assert all(c.isdigit() for c in cells[4:8]), line
    for png in ('golsd_loss.png', 'golsd_map.png'):
        assert os.path.getsize(os.path.join(out_dir, png)) > 5000 and f'({png})' in report
    dsd = [line for line in report.splitlines() if line.startswith('| DynUNet')]
    assert len(dsd) == 3 and 'DSD' in dsd[1] and 'SupervisedTrainer' in dsd[2]
    for line in dsd:
        cells = line.strip('|').split('|')
        assert 0.0 <= float(cells[3]) <= 1.0 and float(cells[6]) >= 0.0, line
    unet2d = [line for line in report.splitlines() if line.startswith('| UNet-FCN')]
    assert len(unet2d) == 2 and 'DSD' in unet2d[1]
    for line in unet2d:
        assert 0.0 <= float(line.strip('|').split('|')[3]) <= 100.0, line
    assert os.path.isfile(str(tmp_path / 'data' / 'msd' / 'Task90_Synthetic' / 'dataset.json'))
    assert os.path.isfile(str(tmp_path / 'data' / 'shapes2d' / 'ann_dir' / 'val' / '0000.png'))
    macil = [
        line for line in report.splitlines()
        if line.startswith('| MACIL-SD') or line.startswith('| same AV network')
    ]
    assert len(macil) == 2
    for line in macil:
        cells = line.strip('|').split('|')
        assert 0.0 <= float(cells[3]) <= 1.0 and 0.0 <= float(cells[4]) <= 1.0, line
    assert os.path.getsize(os.path.join(out_dir, 'macil_pr_curves.png')) > 5000
    assert os.path.isfile(str(tmp_path / 'data' / 'xdv' / 'gt.npy'))
    probes = [
        line for line in report.splitlines()
        if line.startswith('| random init') or line.startswith('| SLidR pre-trained')
    ]
    assert len(probes) == 2
    for line in probes:
        cells = [c.strip() for c in line.strip('|').split('|')]
        assert 0.0 <= float(cells[2]) <= 1.0 and 0.0 <= float(cells[6]) <= 1.0, line
    kitti = [
        line for line in report.splitlines()
        if line.startswith('| from scratch') or line.startswith('| from the SLidR student')
    ]
    assert len(kitti) == 2
    for line in kitti:
        assert 0.0 <= float(line.strip('|').split('|')[2]) <= 1.0, line
    assert os.path.getsize(os.path.join(out_dir, 'slidr_pairings.png')) > 5000
    assert os.path.isfile(os.path.join(out_dir, 'slidr_pairings.ply'))
    # the data was written in COCO layout
    assert os.path.isfile(str(tmp_path / 'data' / 'coco' / 'annotations' / 'instances_train.json'))
