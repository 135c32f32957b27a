"""SLidR maths on plain tensors.

Shapes: ``N`` points, ``V`` voxels (3D rows), ``P`` point–pixel pairings,
``n`` images of ``H×W``, ``S`` superpixel slots per image, ``D`` features.
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from plugins.core.functional import check_temperature

__all__ = ['quaternion_to_matrix', 'lidar_to_camera', 'project_to_image', 'project_points',
           'cylindrical_voxelize', 'superpixel_slots', 'pool_points', 'pool_pixels',
           'kept_slots', 'superpixel_nce', 'lovasz_softmax', 'confusion_matrix',
           'iou_from_confusion']

_EPS = 1e-6


# ----------------------------------------------------------------- projection
def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """3×3 rotation (float64) of a unit quaternion ``(w, x, y, z)`` (normalised
    first).

    Raises:
        ValueError: On a quaternion that is not 4 numbers or has zero norm.
    """
    q = np.asarray(q, dtype=np.float64).ravel()
    if q.size != 4 or not np.isfinite(q).all() or np.linalg.norm(q) == 0:
        raise ValueError(f'rotation must be a non-zero quaternion (w, x, y, z), got {q.tolist()}')
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _pose(record: dict, name: str) -> Tuple[np.ndarray, np.ndarray]:
    missing = [k for k in ('rotation', 'translation') if k not in record]
    if missing:
        raise KeyError(f'{name} record lacks {missing}')
    return quaternion_to_matrix(record['rotation']), np.asarray(record['translation'], np.float64)


def lidar_to_camera(points: np.ndarray, lidar_calib: dict, lidar_pose: dict, cam_pose: dict,
                    cam_calib: dict, float32: bool = True) -> np.ndarray:
    """Lidar-frame xyz → camera-frame xyz through the nuScenes chain.

    lidar → ego (lidar time) → global → ego (camera time) → camera, each record
    ``{'rotation': (w, x, y, z), 'translation': (3,)}``. With ``float32`` the
    devkit's numerics are emulated: rotations in float64 stored back to
    float32, float32 translations.

    Args:
        points (np.ndarray): ``(N, ≥3)`` lidar points (xyz first).

    Returns:
        np.ndarray: ``(N, 3)`` camera-frame points (x right, y down, z forward).

    Raises:
        KeyError: On a record without rotation/translation (names it).
        ValueError: On bad point arrays.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f'points must be (N, >=3), got {pts.shape}')
    dtype = np.float32 if float32 else np.float64
    p = pts[:, :3].astype(dtype).T  # (3, N)

    def rotate(r, x):
        return (r @ x.astype(np.float64)).astype(dtype)

    r, t = _pose(lidar_calib, 'lidar calibrated_sensor')
    p = rotate(r, p) + t.astype(dtype)[:, None]
    r, t = _pose(lidar_pose, 'lidar ego_pose')
    p = rotate(r, p) + t.astype(dtype)[:, None]
    r, t = _pose(cam_pose, 'camera ego_pose')
    p = rotate(r.T, p - t.astype(dtype)[:, None])
    r, t = _pose(cam_calib, 'camera calibrated_sensor')
    p = rotate(r.T, p - t.astype(dtype)[:, None])
    return p.T


def project_to_image(points_cam: np.ndarray, intrinsic, width: int, height: int,
                     min_depth: float = 1.0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of camera-frame points: keep ``d > min_depth``, ``0 < u < W−1``,
    ``0 < v < H−1`` (strict); pixel = ``(round(v), round(u))``, half to even.

    Returns:
        tuple: ``(index (M,), row (M,), col (M,))`` int64 — kept point indices
        and their pixels.

    Raises:
        ValueError: On a bad intrinsic matrix or image size.
    """
    k = np.asarray(intrinsic, dtype=np.float64)
    if k.shape != (3, 3):
        raise ValueError(f'camera_intrinsic must be 3x3, got shape {k.shape} (a lidar '
                         f'record has an empty intrinsic)')
    if width < 2 or height < 2:
        raise ValueError(f'bad image size {width}x{height}')
    # in float64 whatever the points' precision, as the devkit's view_points:
    # a float32 product moves a few points per million across a pixel boundary
    p = np.asarray(points_cam).astype(np.float64)
    uvw = k @ p.T
    with np.errstate(divide='ignore', invalid='ignore'):
        u = uvw[0] / uvw[2]
        v = uvw[1] / uvw[2]
    depth = p[:, 2]
    keep = (depth > min_depth) & (u > 0) & (u < width - 1) & (v > 0) & (v < height - 1)
    index = np.nonzero(keep)[0]
    return index, np.round(v[keep]).astype(np.int64), np.round(u[keep]).astype(np.int64)


def project_points(points: np.ndarray, lidar_calib: dict, lidar_pose: dict, cam_pose: dict,
                   cam_calib: dict, width: int, height: int, min_depth: float = 1.0,
                   float32: bool = True) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`lidar_to_camera` then :func:`project_to_image`; the intrinsic is
    ``cam_calib['camera_intrinsic']``.

    Raises:
        KeyError: If ``cam_calib`` has no ``camera_intrinsic``.
    """
    if 'camera_intrinsic' not in cam_calib:
        raise KeyError('camera calibrated_sensor record lacks camera_intrinsic')
    cam = lidar_to_camera(points, lidar_calib, lidar_pose, cam_pose, cam_calib, float32)
    return project_to_image(cam, cam_calib['camera_intrinsic'], width, height, min_depth)


# -------------------------------------------------------------- voxelisation
def cylindrical_voxelize(xyz: Tensor, size: float = 0.1,
                         angle_deg: float = 1.0) -> Tuple[Tensor, Tensor, Tensor]:
    """Cylindrical cells ``(⌊ρ/size⌋, ⌊φ°/angle⌋, ⌊z/size⌋)``, one voxel per
    unique cell (sorted), represented by its first point.

    Args:
        xyz (Tensor): ``(N, 3)``.

    Returns:
        tuple: ``coords (V, 3)`` long, ``inverse (N,)`` point → voxel,
        ``representative (V,)`` the first point of each voxel.

    Raises:
        ValueError: On a non-(N, 3) input, non-positive sizes, or non-finite
            coordinates (the cell of a NaN or inf point is undefined; the
            message counts them and names the first row).
    """
    if xyz.dim() != 2 or xyz.shape[1] < 3:
        raise ValueError(f'xyz must be (N, 3), got {tuple(xyz.shape)}')
    if size <= 0 or angle_deg <= 0:
        raise ValueError(f'voxel size and angle must be > 0, got {size}, {angle_deg}')
    finite = torch.isfinite(xyz[:, :3]).all(1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        raise ValueError(f'{bad.numel()} of {xyz.shape[0]} points have non-finite '
                         f'coordinates, e.g. row {int(bad[0])}: {xyz[bad[0], :3].tolist()}; '
                         f'drop them before voxelizing')
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rho = torch.sqrt(x * x + y * y) / size
    phi = torch.rad2deg(torch.atan2(y, x)) / angle_deg
    cells = torch.stack([rho, phi, z / size], 1).floor().long()
    if cells.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=xyz.device)
        return cells, empty, empty
    coords, inverse = torch.unique(cells, dim=0, return_inverse=True)
    order = torch.arange(cells.shape[0], device=xyz.device)
    first = torch.full((coords.shape[0],), cells.shape[0], dtype=torch.long, device=xyz.device)
    first = first.scatter_reduce(0, inverse, order, reduce='amin')
    return coords, inverse, first


# ------------------------------------------------------------------ pooling
def superpixel_slots(superpixels: Tensor, stride: int = 150,
                     on_overflow: str = 'error') -> Tuple[Tensor, int]:
    """Global slot map ``σ = n·S + s`` of per-image superpixel ids.

    Args:
        superpixels (Tensor): ``(n, H, W)`` integer ids per image.
        stride (int): ``S``, slots per image.
        on_overflow (str): ``'error'`` if an id ≥ S (it would alias a
            superpixel of the next image), or ``'offsets'``: cumulative
            per-image offsets of ``max_id + 1`` (slot numbers change, the loss
            does not).

    Returns:
        tuple: ``(slots (n, H, W) long, number of slots)``.

    Raises:
        TypeError: On floating-point ids (truncating them would merge
            superpixels); cast label maps to an integer type when reading them.
        ValueError: On negative ids, a bad mode, or an overflow in ``'error'``
            mode (names the image and its largest id).
    """
    if superpixels.dim() != 3:
        raise ValueError(f'superpixels must be (n, H, W), got {tuple(superpixels.shape)}')
    if superpixels.is_floating_point() or superpixels.is_complex():
        raise TypeError(f'superpixel ids must be integers, got {superpixels.dtype}: '
                        f'float ids would be truncated and merge superpixels')
    ids = superpixels.long()
    n = ids.shape[0]
    if n == 0:
        return ids, 0
    if bool((ids < 0).any()):
        raise ValueError('superpixel ids must be >= 0')
    top = ids.flatten(1).amax(1)
    if on_overflow == 'error':
        bad = torch.nonzero(top >= stride)[:, 0].tolist()
        if bad:
            raise ValueError(f'superpixel ids reach {int(top[bad[0]])} in image {bad[0]} but '
                             f'only {stride} slots per image are reserved (superpixel_size); '
                             f"raise it or use on_overflow='offsets'")
        offsets = torch.arange(n, device=ids.device) * stride
        return ids + offsets[:, None, None], n * stride
    if on_overflow == 'offsets':
        widths = top + 1
        offsets = torch.cumsum(widths, 0) - widths
        return ids + offsets[:, None, None], int(widths.sum())
    raise ValueError(f"on_overflow must be 'error' or 'offsets', got {on_overflow!r}")


def _accumulation_dtype(x: Tensor) -> torch.dtype:
    """float32 for half-precision inputs (sums of many bf16 rows lose digits),
    else the input's own dtype."""
    return torch.promote_types(x.dtype, torch.float32)


def pool_points(features: Tensor, pair_rows: Tensor, pair_slots: Tensor,
                num_slots: int) -> Tuple[Tensor, Tensor]:
    """``k_σ = Σ_{pairings j in σ} f_{v_j} / (m_σ + 1e-6)``, counted per pairing.

    Args:
        features (Tensor): ``(V, D)`` 3D features.
        pair_rows (Tensor): ``(P,)`` 3D row of each pairing.
        pair_slots (Tensor): ``(P,)`` slot of each pairing's pixel.
        num_slots (int): Number of slots.

    Returns:
        tuple: ``k (num_slots, D)``, ``m (num_slots,)`` pairing counts; summed
        and returned in float32 for float16/bfloat16 features.

    Raises:
        ValueError: On mismatched pairings or out-of-range indices.
    """
    if pair_rows.shape != pair_slots.shape or pair_rows.dim() != 1:
        raise ValueError(f'pairing rows {tuple(pair_rows.shape)} and slots '
                         f'{tuple(pair_slots.shape)} must be matching 1-D tensors')
    if pair_rows.numel():
        if int(pair_rows.min()) < 0 or int(pair_rows.max()) >= features.shape[0]:
            raise ValueError(f'pairings reference 3D rows outside [0, {features.shape[0]})')
        if int(pair_slots.min()) < 0 or int(pair_slots.max()) >= num_slots:
            raise ValueError(f'pairings reference slots outside [0, {num_slots})')
    acc = _accumulation_dtype(features)
    pooled = features.new_zeros(num_slots, features.shape[1], dtype=acc)
    pooled = pooled.index_add(0, pair_slots, features.index_select(0, pair_rows).to(acc))
    counts = torch.bincount(pair_slots, minlength=num_slots).to(acc)
    return pooled / (counts[:, None] + _EPS), counts


class _LocalSlotSum(torch.autograd.Function):
    """``part[i, :, s] = Σ_{p : local[i, p] = s} feats[i, :, p]`` per image, in the
    ``(n, D, P)`` layout; the gradient is one gather per image into one buffer."""

    @staticmethod
    def forward(ctx, feats: Tensor, local: Tensor, span: int) -> Tensor:
        n, d, _ = feats.shape
        part = feats.new_zeros(n, d, span)
        for i in range(n):
            part[i].index_add_(1, local[i], feats[i])
        ctx.save_for_backward(local)
        ctx.shape = feats.shape
        return part

    @staticmethod
    def backward(ctx, grad: Tensor):
        local, = ctx.saved_tensors
        grad = grad.contiguous()  # small: (n, D, span)
        out = grad.new_empty(ctx.shape)
        for i in range(out.shape[0]):
            torch.index_select(grad[i], 1, local[i], out=out[i])
        return out, None, None


def pool_pixels(pixel_features: Tensor, slots: Tensor, num_slots: int) -> Tuple[Tensor, Tensor]:
    """``q_σ = Σ_{pixels of σ} g / (a_σ + 1e-6)`` over every pixel of the slot.

    Args:
        pixel_features (Tensor): ``(n, D, H, W)``.
        slots (Tensor): ``(n, H, W)`` slot map (:func:`superpixel_slots`).
        num_slots (int): Number of slots.

    Returns:
        tuple: ``q (num_slots, D)``, ``a (num_slots,)`` pixel counts; summed
        and returned in float32 for float16/bfloat16 features.

    Raises:
        ValueError: If the slot map does not match the feature maps.
    """
    n, d, h, w = pixel_features.shape
    if tuple(slots.shape) != (n, h, w):
        raise ValueError(f'slot map {tuple(slots.shape)} does not match pixel features '
                         f'{tuple(pixel_features.shape)} (expected ({n}, {h}, {w}))')
    acc = _accumulation_dtype(pixel_features)
    index = slots.reshape(n, h * w)
    counts = torch.bincount(index.reshape(-1), minlength=num_slots).to(acc)
    pooled = pixel_features.new_zeros(num_slots, d, dtype=acc)
    if n == 0 or h * w == 0:
        return pooled, counts
    # Pool in the features' own (n, D, H·W) layout: each image's slots form a
    # short local range, summed along the contiguous pixel axis (no
    # channels-last copy of the map, forward or backward).
    lo, hi = index.amin(1), index.amax(1)
    span = int((hi - lo).max()) + 1
    if span > h * w:  # slot ranges wider than the image: a per-image buffer would be larger
        flat = pixel_features.permute(0, 2, 3, 1).reshape(-1, d).to(acc)
        pooled = pooled.index_add(0, index.reshape(-1), flat)
        return pooled / (counts[:, None] + _EPS), counts
    feats = pixel_features.reshape(n, d, h * w).to(acc)
    part = _LocalSlotSum.apply(feats, index - lo[:, None], span)  # (n, D, span)
    rows = lo[:, None] + torch.arange(span, device=index.device)  # (n, span) global slots
    valid = rows <= hi[:, None]
    pooled = pooled.index_add(0, rows[valid], part.transpose(1, 2)[valid])
    return pooled / (counts[:, None] + _EPS), counts


# --------------------------------------------------------------------- loss
def kept_slots(k: Tensor, counts: Optional[Tensor] = None, rule: str = 'first_channel') -> Tensor:
    """Ascending indices of the kept slots: ``k_σ[0] ≠ 0`` (the reference) or,
    with ``rule='count'``, ``m_σ > 0``.

    Raises:
        ValueError: On an unknown rule or a missing count.
    """
    if rule == 'first_channel':
        return torch.nonzero(k[:, 0] != 0)[:, 0]
    if rule == 'count':
        if counts is None:
            raise ValueError("rule='count' needs the pairing counts")
        return torch.nonzero(counts > 0)[:, 0]
    raise ValueError(f"rule must be 'first_channel' or 'count', got {rule!r}")


def superpixel_nce(k: Tensor, q: Tensor, temperature: float = 0.07,
                   counts: Optional[Tensor] = None,
                   rule: str = 'first_channel') -> Tuple[Tensor, int]:
    """``L = −(1/|K|) Σ_i log softmax_j(⟨k_i, q_j⟩/τ)[i]`` over the kept slots
    (3D → 2D only; every other kept slot of the batch is a negative).

    Returns:
        tuple: ``(loss, |K|)``. With nothing kept the loss is
        ``0·(Σk + Σq)`` — zero with a graph, instead of the reference's NaN —
        and a warning is issued.

    Raises:
        ValueError: On mismatched shapes or a bad temperature.
    """
    t = check_temperature(temperature)
    if k.shape != q.shape or k.dim() != 2:
        raise ValueError(f'pooled 3D {tuple(k.shape)} and 2D {tuple(q.shape)} features must '
                         f'be matching (slots, D)')
    kept = kept_slots(k, counts, rule)
    if kept.numel() == 0:
        warnings.warn('SLidR: no superpixel holds a paired point in this batch; the loss is '
                      '0 (the reference would give NaN)', RuntimeWarning, stacklevel=2)
        return 0.0 * (k.sum() + q.sum()), 0
    ks, qs = k[kept], q[kept]
    logits = ks @ qs.t() / t
    target = torch.arange(kept.numel(), device=k.device)
    return F.cross_entropy(logits, target), int(kept.numel())


# ------------------------------------------------------- downstream segmentation
def lovasz_softmax(probs: Tensor, labels: Tensor, ignore_index: Optional[int] = None) -> Tensor:
    """Lovász-softmax loss (Berman et al., 2018) over the classes present.

    For each class ``c`` present in ``labels``: sort the errors ``|[y = c] − p_c|``
    in decreasing order and take their dot product with the gradient of the
    Lovász extension of the Jaccard loss; average over those classes.

    Args:
        probs (Tensor): ``(N, C)`` class probabilities.
        labels (Tensor): ``(N,)`` class ids.
        ignore_index (int, optional): Rows with this label are left out.

    Returns:
        Tensor: A scalar (0 with a graph when no row is left).

    Raises:
        ValueError: If a kept label is outside ``[0, C)``.
    """
    if ignore_index is not None:
        keep = labels != ignore_index
        probs, labels = probs[keep], labels[keep]
    if labels.numel() == 0:
        return probs.sum() * 0.0
    present = torch.unique(labels).tolist()  # sorted; the one host read
    if present[0] < 0 or present[-1] >= probs.shape[1]:
        raise ValueError(f'lovasz_softmax: labels must lie in [0, {probs.shape[1]}) for '
                         f'{probs.shape[1]} classes (or equal ignore_index={ignore_index}), '
                         f'got values in [{present[0]}, {present[-1]}]')
    losses = []
    for c in present:
        fg = (labels == c).to(probs.dtype)
        errors = (fg - probs[:, c]).abs()
        errors, order = torch.sort(errors, descending=True)
        fg = fg[order]
        gts = fg.sum()
        intersection = gts - fg.cumsum(0)
        union = gts + (1.0 - fg).cumsum(0)
        jaccard = 1.0 - intersection / union
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        losses.append(torch.dot(errors, jaccard))
    return torch.stack(losses).mean()


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``(C, C)`` counts, rows = ground truth, columns = prediction.

    Args:
        pred (Tensor): ``(N,)`` predicted class ids in ``[0, C)``.
        target (Tensor): ``(N,)`` true class ids in ``[0, C)``.
        num_classes (int): ``C``.

    Raises:
        ValueError: On different lengths or ids outside ``[0, C)`` (they would
            be counted in another cell).
    """
    if pred.shape != target.shape:
        raise ValueError(f'pred {tuple(pred.shape)} and target {tuple(target.shape)} differ')
    for name, ids in (('pred', pred), ('target', target)):
        if not ids.numel():
            continue
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f'confusion_matrix: {name} ids must lie in [0, {num_classes}), '
                             f'got values in [{lo}, {hi}]')
    index = target.long() * num_classes + pred.long()
    return torch.bincount(index, minlength=num_classes ** 2).view(num_classes, num_classes)


def iou_from_confusion(confusion: Tensor, ignore_index: int = 0) -> Tuple[Tensor, float]:
    """Per-class IoU ``TP / (TP + FP + FN)`` after zeroing the ground-truth
    row of ``ignore_index``; a class with an empty union gets IoU 1 (the
    reference's rule). mIoU averages the classes other than ``ignore_index``.
    """
    conf = confusion.clone().double()
    conf[ignore_index] = 0
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.ones_like(tp))
    keep = [c for c in range(conf.shape[0]) if c != ignore_index]
    return iou, float(iou[keep].mean())
