"""tools/analysis/golsd_schedules.py: paired statistics, argument parsing, the
table, and reading real run folders (hand-made test logs)."""
import math

import pytest

from .conftest import load_tool


def _tool():
    return load_tool('golsd_schedules')


def test_paired_difference_by_hand():
    mean, se, ahead = _tool().paired([0.5, 0.6, 0.7], [0.6, 0.6, 0.9])
    # differences 0.1, 0.0, 0.2: mean 0.1, sample sd 0.1, SE 0.1 / sqrt(3)
    assert mean == pytest.approx(0.1)
    assert se == pytest.approx(0.1 / math.sqrt(3))
    assert ahead == 2
    one = _tool().paired([0.5], [0.4])
    assert one[0] == pytest.approx(-0.1) and math.isnan(one[1]) and one[2] == 0
    with pytest.raises(ValueError, match='2 and 1'):
        _tool().paired([0.1, 0.2], [0.3])
    with pytest.raises(ValueError, match='0 and 0'):
        _tool().paired([], [])


def test_schedules_are_parsed_and_bad_ones_named():
    parse = _tool().parse_schedules
    assert parse([['12', 'a', 'b'], ['36', 'c']]) == {12: ['a', 'b'], 36: ['c']}
    with pytest.raises(ValueError, match='at least one folder'):
        parse([['12']])
    with pytest.raises(ValueError, match="'x12' is not a number"):
        parse([['x12', 'a']])
    with pytest.raises(ValueError, match='12 given twice'):
        parse([['12', 'a'], ['12', 'b']])


def test_table_rows_follow_the_schedules():
    maps = {
        12: dict(plain=[0.5, 0.7], golsd=[0.6, 0.8]),
        36: dict(plain=[0.9, 0.9], golsd=[0.8, 0.95])
    }
    lines = _tool().table(maps, 12).splitlines()
    assert lines[2] == '| 144 | 2 | 0.600 | 0.700 | +0.100 (0.000) | 2 of 2 |'
    assert lines[3] == '| 432 | 2 | 0.900 | 0.875 | -0.025 (0.075) | 1 of 2 |'


def test_finals_are_read_from_the_runs_test_logs(tmp_path):
    tool = _tool()
    values = {('plain', 0): 0.61, ('plain', 1): 0.63, ('golsd', 0): 0.7, ('golsd', 1): 0.59}
    for (row, seed), value in values.items():
        name = f'golsd_{row}_e12_s{seed}'
        folder = tmp_path / ('a' if row == 'plain' else 'b')
        (folder / 'logs').mkdir(parents=True, exist_ok=True)
        (folder / name / 'run' / 'vis_data').mkdir(parents=True)
        (folder / name / 'run' / 'vis_data' /
         'scalars.json').write_text('{"coco/bbox_mAP": 0.1, "step": 3}\n')
        (folder / 'logs' / f'{name}_test.log').write_text(
            f'Epoch(test) [3/3]    coco/bbox_mAP: {value}  coco/bbox_mAP_50: 0.9000  '
            f'coco/bbox_mAP_75: 0.8000\n')
    maps = tool.final_maps({12: [str(tmp_path / 'a'), str(tmp_path / 'b')]}, [0, 1])
    assert maps == {12: dict(plain=[0.61, 0.63], golsd=[0.7, 0.59])}
    with pytest.raises(FileNotFoundError, match='golsd_plain_e12_s2'):
        tool.final_maps({12: [str(tmp_path / 'a')]}, [2])
