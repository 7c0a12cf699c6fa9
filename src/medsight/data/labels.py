"""Label tables: parsing dataset.json's forms and keeping class values consecutive (0..n-1).

Every :class:`DatasetSpec` medsight builds has ``labels`` values 0..n-1, as nnU-Net requires; when
the files store other values (BraTS 1/2/4, masks stored as 0/255), ``label_map`` translates them.
"""

from __future__ import annotations

from typing import Any

from medsight.errors import DataError

LabelTable = tuple[dict[str, int], dict[str, list[int]] | None, dict[int, int] | None]


def parse_labels(raw: Any, where: str) -> tuple[dict[str, int], dict[str, list[int]] | None]:
    """Parse dataset.json ``labels``: nnU-Net v2 ``{name: int | [ints]}`` or MSD v1 ``{"0": name}``.

    Region entries (a list of values, nnU-Net v2 region-based training) go to the second result.
    """
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{where}: 'labels' must be a non-empty mapping, found {raw!r}")
    if all(_is_int_text(k) for k in raw) and all(isinstance(v, str) for v in raw.values()):
        return {str(name): int(k) for k, name in raw.items()}, None  # MSD v1: {"0": "background"}
    labels: dict[str, int] = {}
    entries: dict[str, list[int]] = {}  # every non-background entry, in file order
    has_region = False
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | list | tuple):
            raise DataError(
                f"{where}: label {name!r} must be an integer or a list of integers, found {value!r}"
            )
        if isinstance(value, int):
            labels[str(name)] = value
            if value != 0:
                entries[str(name)] = [value]
            continue
        if not value or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise DataError(f"{where}: region {name!r} must list integer label values, found {value!r}")
        entries[str(name)] = sorted(set(value))
        has_region = True
    if not has_region:
        return labels, None
    return _labels_from_regions(labels, entries), entries


def _is_int_text(key: Any) -> bool:
    return isinstance(key, str) and key.strip().lstrip("-").isdigit()


def _labels_from_regions(labels: dict[str, int], regions: dict[str, list[int]]) -> dict[str, int]:
    """Name every value a region uses: by its single-valued entry if any, else ``label_<v>``."""
    by_value = {v: name for name, v in labels.items()}
    values = sorted({v for vs in regions.values() for v in vs} | set(by_value))
    out = {by_value.get(v, f"label_{v}"): v for v in values}
    if 0 not in out.values():
        out = {"background": 0, **out}
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def make_consecutive(
    labels: dict[str, int],
    regions: dict[str, list[int]] | None = None,
    label_map: dict[int, int] | None = None,
) -> LabelTable:
    """Renumber ``labels`` to 0..n-1 (background stays 0), updating ``regions`` and ``label_map``.

    ``label_map`` maps stored values to the values of ``labels``; the result maps stored values to
    the new consecutive ones. Unchanged inputs come back unchanged.
    """
    if 0 not in labels.values():
        raise DataError(f"labels {labels}: a background class with value 0 is required")
    values = [0, *sorted(set(labels.values()) - {0})]
    renumber = {v: i for i, v in enumerate(values)}
    if all(k == v for k, v in renumber.items()):
        return dict(labels), regions, label_map
    new_labels = {name: renumber[v] for name, v in labels.items()}
    new_regions = None
    if regions is not None:
        unknown = sorted({v for vs in regions.values() for v in vs} - set(values))
        if unknown:
            raise DataError(f"regions {regions}: values {unknown} are not among the labels {values}")
        new_regions = {name: sorted(renumber[v] for v in vs) for name, vs in regions.items()}
    base = label_map if label_map is not None else {v: v for v in values}
    new_map = {int(k): renumber[v] for k, v in base.items()}
    return new_labels, new_regions, new_map


def check_labels(labels: dict[str, int], where: str) -> None:
    """Raise DataError unless ``labels`` has a background 0 and no value used twice."""
    values = list(labels.values())
    if 0 not in values:
        raise DataError(f"{where}: labels {labels} need a background class with value 0")
    dup = sorted({v for v in values if values.count(v) > 1})
    if dup:
        raise DataError(f"{where}: label values {dup} are used by more than one class name in {labels}")
