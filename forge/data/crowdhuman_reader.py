"""Readers for CrowdHuman annotations (``.odgt``) and detection results (odgt or COCO-style json).

Ground truth (``annotation_val.odgt``): one JSON object per line with ``ID``, ``gtboxes`` (a list of objects with
``tag`` (``"person"`` or ``"mask"``), ``fbox`` / ``vbox`` / ``hbox`` as ``[x, y, w, h]``, optional
``extra.ignore`` and ``head_attr.ignore``) and, in some dumps, ``width`` / ``height``.

Detections, either

* odgt: one JSON object per line with ``ID``, ``dtboxes`` (objects with ``box`` ``[x, y, w, h]``, ``score`` and
  an optional ``tag``, which is not looked at) and optional ``width`` / ``height`` (CrowdDet's dump format; extra keys
  such as an embedded ``gtboxes`` are ignored), or
* a COCO-style result json: a list of ``{"image_id", "bbox": [x, y, w, h], "score", "category_id"}`` plus a
  mapping from ``image_id`` to the CrowdHuman ``ID`` (see :func:`read_coco_results`).

Records keep boxes exactly as written in the file: ``float64`` ``(N, 4)`` **xywh** (no ``+1``); the evaluator does
``x2 = x + w`` itself so that it reproduces the reference arithmetic bit for bit (:func:`xywh_to_xyxy`).
A box key missing from a GT entry is stored as a row of NaN; the evaluator refuses to use it (naming the line).

Ignore rule (CrowdDet ``load_gt_boxes``): a GT box is ignored when ``tag != "person"`` or ``extra.ignore != 0``;
for head boxes also when ``head_attr.ignore != 0``.

Every malformed input raises :class:`CrowdHumanFormatError` naming the file, the line (1-based) and the key.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BOX_TYPES",
    "CrowdHumanFormatError",
    "GTRecord",
    "DTRecord",
    "xywh_to_xyxy",
    "read_gt_odgt",
    "read_dt_odgt",
    "read_coco_results",
    "read_detections",
    "read_id_map",
]

BOX_TYPES = ("fbox", "vbox", "hbox")


class CrowdHumanFormatError(ValueError):
    """Malformed CrowdHuman annotation / result file (message names file, line and key)."""


@dataclass
class GTRecord:
    """Ground truth of one image.

    Attributes:
        ID: CrowdHuman image ID (e.g. ``"273271,c9db000d5146c15"``).
        fbox / vbox / hbox: ``(N, 4)`` float64 **xywh** full-body / visible / head boxes (NaN rows where missing).
        tags: the ``N`` ``tag`` strings.
        ignore: ``(N,)`` bool, ``tag != "person"`` or ``extra.ignore != 0``.
        head_ignore: ``(N,)`` bool, ``ignore`` or ``head_attr.ignore != 0``.
        width / height: image size when the line carries ``width`` / ``height``, else None.
        source / line: where the record came from, for error messages.
    """

    ID: str
    fbox: np.ndarray
    vbox: np.ndarray
    hbox: np.ndarray
    tags: list[str]
    ignore: np.ndarray
    head_ignore: np.ndarray
    width: float | None = None
    height: float | None = None
    source: str = ""
    line: int = 0

    def __len__(self) -> int:
        return int(self.ignore.shape[0])

    def boxes(self, box_type: str) -> np.ndarray:
        """``(N, 4)`` xywh boxes of ``box_type`` (``fbox``/``vbox``/``hbox``)."""
        if box_type not in BOX_TYPES:
            raise ValueError(f"box_type must be one of {BOX_TYPES}, got {box_type!r}")
        return getattr(self, box_type)

    def ignore_flags(self, box_type: str) -> np.ndarray:
        """``(N,)`` bool ignore flags for ``box_type`` (head boxes also honour ``head_attr.ignore``)."""
        return self.head_ignore if box_type == "hbox" else self.ignore


@dataclass
class DTRecord:
    """Detections of one image.

    Attributes:
        ID: CrowdHuman image ID.
        boxes: ``(M, 4)`` float64 **xywh**.
        scores: ``(M,)`` float64.
        width / height: image size if the result carries it, else None.
        source / line: where the record came from (line 0 for COCO-style json).
    """

    ID: str
    boxes: np.ndarray
    scores: np.ndarray
    width: float | None = None
    height: float | None = None
    source: str = ""
    line: int = 0
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` xywh -> xyxy as float64 with ``x2 = x + w`` (no ``+1``, as CrowdDet)."""
    out = np.array(boxes, dtype=np.float64, copy=True).reshape(-1, 4)
    out[:, 2:4] += out[:, 0:2]
    return out


# ----------------------------------------------------------------------------------------------------------------
# helpers


def _err(path: str, line: int, msg: str) -> CrowdHumanFormatError:
    where = f"{path}:{line}" if line else path
    return CrowdHumanFormatError(f"{where}: {msg}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _box(value: Any, path: str, line: int, key: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 4 or not all(_is_number(v) for v in value):
        raise _err(path, line, f"key {key!r} must be a list of 4 numbers [x, y, w, h], got {value!r}")
    if not all(math.isfinite(v) for v in value):
        raise _err(path, line, f"key {key!r} has a non-finite value: {value!r}")
    return value


def _score(value: Any, path: str, line: int, key: str) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise _err(path, line, f"key {key!r} must be a finite number, got {value!r}")
    return value


def _size(obj: Mapping, name: str, path: str, line: int) -> float | None:
    if name not in obj or obj[name] is None:
        return None
    v = obj[name]
    if not _is_number(v) or not math.isfinite(v) or v <= 0:
        raise _err(path, line, f"key {name!r} must be a positive number, got {v!r}")
    return v


def _flag(obj: Any, sub: str, key: str, path: str, line: int) -> bool:
    """``obj[sub]['ignore'] != 0`` with type checks (missing -> False)."""
    if sub not in obj:
        return False
    d = obj[sub]
    if not isinstance(d, Mapping):
        raise _err(path, line, f"key {key}.{sub!r} must be an object, got {type(d).__name__}")
    if "ignore" not in d:
        return False
    v = d["ignore"]
    if not _is_number(v):
        raise _err(path, line, f"key {key}.{sub}.ignore must be a number, got {v!r}")
    return v != 0


def _not_utf8(path: str, line: int, e: UnicodeDecodeError) -> CrowdHumanFormatError:
    return _err(path, line, f"not UTF-8 text (byte 0x{e.object[e.start]:02x}); odgt/json files must be UTF-8")


def _read_json(path: str):
    """``json.load`` of a UTF-8 file; bad bytes or bad JSON raise :class:`CrowdHumanFormatError` naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError as e:
        raise _not_utf8(path, 0, e) from None
    except json.JSONDecodeError as e:
        raise _err(path, e.lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None


def _iter_json_lines(path: str):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CrowdHuman file not found: {path}")
    with open(path, "rb") as f:  # bytes, decoded per line: a bad byte is reported with its line number
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _not_utf8(path, lineno, e) from None
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise _err(path, lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise _err(path, lineno, f"each line must be a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _get_id(obj: Mapping, path: str, line: int) -> str:
    if "ID" not in obj:
        raise _err(path, line, "missing key 'ID'")
    v = obj["ID"]
    if not isinstance(v, str) or not v:
        raise _err(path, line, f"key 'ID' must be a non-empty string, got {v!r}")
    return v


# ----------------------------------------------------------------------------------------------------------------
# ground truth


def _iter_records(path: str, list_key: str):
    """``(lineno, obj, ID, obj[list_key])`` per line, with the checks every odgt reader shares: unique ``ID`` and a
    list under ``list_key``."""
    seen: dict[str, int] = {}
    for lineno, obj in _iter_json_lines(path):
        rid = _get_id(obj, path, lineno)
        if rid in seen:
            raise _err(path, lineno, f"duplicate ID {rid!r} (first on line {seen[rid]})")
        seen[rid] = lineno
        if list_key not in obj:
            raise _err(path, lineno, f"missing key {list_key!r} (ID {rid!r})")
        items = obj[list_key]
        if not isinstance(items, list):
            raise _err(path, lineno, f"key {list_key!r} must be a list, got {type(items).__name__}")
        yield lineno, obj, rid, items


def _numeric(rows: list) -> np.ndarray | None:
    """``(N, 4)`` float64 from a list of 4-number lists, or None when anything is off (ragged, non-numeric, inf)."""
    try:
        arr = np.array(rows)
    except (ValueError, TypeError):
        return None
    if arr.dtype.kind not in "iuf" or arr.shape != (len(rows), 4):
        return None
    arr = arr.astype(np.float64)
    return arr if np.isfinite(arr).all() else None


def _ignored(gb: Mapping, sub: str) -> bool:
    d = gb.get(sub)
    if d is None:
        return False
    v = d.get("ignore", 0)  # AttributeError for a non-object: caught by the caller
    if not _is_number(v):
        raise TypeError(v)
    return v != 0


def _gtboxes_fast(gtboxes: list):
    """Parse well-formed ``gtboxes`` quickly; None when the careful path is needed (it raises the precise error)."""
    n = len(gtboxes)
    if n == 0:
        empty = np.zeros((0, 4))
        return {k: empty.copy() for k in BOX_TYPES}, [], np.zeros(0, bool), np.zeros(0, bool)
    try:
        tags = [gb["tag"] for gb in gtboxes]
        if not all(type(t) is str for t in tags):
            return None
        boxes = {}
        for k in BOX_TYPES:
            arr = _numeric([gb[k] for gb in gtboxes])
            if arr is None:
                return None
            boxes[k] = arr
        ign = [t != "person" or _ignored(gb, "extra") for t, gb in zip(tags, gtboxes)]
        head = [b or _ignored(gb, "head_attr") for b, gb in zip(ign, gtboxes)]
    except (KeyError, TypeError, AttributeError):
        return None
    return boxes, tags, np.array(ign, dtype=bool), np.array(head, dtype=bool)


def _gtboxes_checked(gtboxes: list, path: str, lineno: int, rid: str):
    nan_row = [math.nan] * 4
    cols: dict[str, list] = {k: [] for k in BOX_TYPES}
    tags, ign, head_ign = [], [], []
    for i, gb in enumerate(gtboxes):
        key = f"gtboxes[{i}]"
        if not isinstance(gb, Mapping):
            raise _err(path, lineno, f"key {key!r} must be an object, got {type(gb).__name__}")
        if "tag" not in gb:
            raise _err(path, lineno, f"missing key '{key}.tag' (ID {rid!r})")
        tag = gb["tag"]
        if not isinstance(tag, str):
            raise _err(path, lineno, f"key '{key}.tag' must be a string, got {tag!r}")
        if not any(k in gb for k in BOX_TYPES):
            raise _err(path, lineno, f"key {key!r} has none of {BOX_TYPES} (ID {rid!r})")
        for k in BOX_TYPES:
            cols[k].append(_box(gb[k], path, lineno, f"{key}.{k}") if k in gb else nan_row)
        body_ignore = tag != "person" or _flag(gb, "extra", key, path, lineno)
        tags.append(tag)
        ign.append(body_ignore)
        head_ign.append(body_ignore or _flag(gb, "head_attr", key, path, lineno))
    boxes = {k: np.array(v, dtype=np.float64).reshape(-1, 4) for k, v in cols.items()}
    return boxes, tags, np.array(ign, dtype=bool), np.array(head_ign, dtype=bool)


def read_gt_odgt(path: str | os.PathLike) -> list[GTRecord]:
    """Read a CrowdHuman ground-truth ``.odgt`` (file order is kept; it fixes the evaluator's image order).

    Raises:
        CrowdHumanFormatError: bad JSON, missing/mistyped key, or a duplicated ``ID`` (naming file and line).
    """
    path = os.fspath(path)
    records: list[GTRecord] = []
    for lineno, obj, rid, gtboxes in _iter_records(path, "gtboxes"):
        parsed = _gtboxes_fast(gtboxes)
        if parsed is None:  # something is off: walk the boxes one by one to name the culprit
            parsed = _gtboxes_checked(gtboxes, path, lineno, rid)
        boxes, tags, ign, head_ign = parsed
        records.append(
            GTRecord(
                ID=rid,
                fbox=boxes["fbox"],
                vbox=boxes["vbox"],
                hbox=boxes["hbox"],
                tags=tags,
                ignore=ign,
                head_ignore=head_ign,
                width=_size(obj, "width", path, lineno),
                height=_size(obj, "height", path, lineno),
                source=path,
                line=lineno,
            )
        )
    return records


# ----------------------------------------------------------------------------------------------------------------
# detections


def _boxes_scores(
    items: list, path: str, line: int, list_key: str, box_key: str, labels: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    if not items:
        return np.zeros((0, 4), dtype=np.float64), np.zeros(0, dtype=np.float64)
    try:  # fast path: well-formed input
        boxes = _numeric([d[box_key] for d in items])
        scores = np.array([d["score"] for d in items])
        ok = (
            boxes is not None
            and scores.dtype.kind in "iuf"
            and scores.shape == (len(items),)
            and np.isfinite(scores).all()
        )
    except (KeyError, TypeError, ValueError):
        ok = False
    if ok:
        return boxes, scores.astype(np.float64)
    # slow path: find the first offending entry and name it
    for i, d in enumerate(items):
        key = f"{list_key}[{i}]" if labels is None else labels[i]
        if not isinstance(d, Mapping):
            raise _err(path, line, f"key {key!r} must be an object, got {type(d).__name__}")
        for k in (box_key, "score"):
            if k not in d:
                raise _err(path, line, f"missing key '{key}.{k}'")
        _box(d[box_key], path, line, f"{key}.{box_key}")
        _score(d["score"], path, line, f"{key}.score")
    raise _err(path, line, f"malformed {list_key!r}")  # pragma: no cover - every failure is caught above


def read_dt_odgt(path: str | os.PathLike, box_key: str = "box") -> list[DTRecord]:
    """Read detections in CrowdDet's odgt format (``ID``, ``dtboxes`` [``box``, ``score``], opt. ``width``/``height``).

    Args:
        path: the ``.odgt`` / ``.json`` lines file.
        box_key: key of the box inside each ``dtboxes`` entry (CrowdDet uses ``box``).

    Raises:
        CrowdHumanFormatError: bad JSON, missing key, non-finite value or duplicated ``ID``.
    """
    path = os.fspath(path)
    out: list[DTRecord] = []
    for lineno, obj, rid, items in _iter_records(path, "dtboxes"):
        boxes, scores = _boxes_scores(items, path, lineno, "dtboxes", box_key)
        out.append(
            DTRecord(
                ID=rid,
                boxes=boxes,
                scores=scores,
                width=_size(obj, "width", path, lineno),
                height=_size(obj, "height", path, lineno),
                source=path,
                line=lineno,
            )
        )
    return out


def read_id_map(path: str | os.PathLike) -> dict:
    """Load an ``image_id -> ID`` mapping from json.

    Accepted: a json object ``{"<image_id>": "<ID>", ...}``, or a COCO-style annotation file whose ``images`` carry
    ``id`` and ``file_name`` (the ``ID`` is the file name without folder and extension); the values are then dicts
    ``{"ID", "width", "height"}`` so that the detections learn the image size (needed for clipping).
    """
    path = os.fspath(path)
    data = _read_json(path)
    if isinstance(data, Mapping) and "images" in data:
        out = {}
        for i, im in enumerate(data["images"]):
            if not isinstance(im, Mapping) or "id" not in im or "file_name" not in im:
                raise _err(path, 0, f"key 'images[{i}]' needs 'id' and 'file_name'")
            out[im["id"]] = {
                "ID": os.path.splitext(os.path.basename(str(im["file_name"])))[0],
                "width": _size(im, "width", path, 0),
                "height": _size(im, "height", path, 0),
            }
        return out
    if isinstance(data, Mapping):
        return dict(data)
    raise _err(path, 0, "id map must be a json object or a COCO file with 'images'")


def _lookup(id_map: Mapping | None, image_id: Any) -> tuple[str | None, float | None, float | None]:
    if id_map is None:
        return (image_id if isinstance(image_id, str) else None), None, None
    v = id_map.get(image_id) if isinstance(image_id, (str, int)) else None
    if v is None:
        v = id_map.get(str(image_id))  # json object keys are strings
    if isinstance(v, Mapping):
        return v.get("ID"), v.get("width"), v.get("height")
    return v, None, None


def read_coco_results(
    path: str | os.PathLike,
    id_map: Mapping | str | os.PathLike | None = None,
    category_ids: set[int] | None = None,
) -> list[DTRecord]:
    """Read a COCO-style result json (``[{"image_id", "bbox", "score", "category_id"}, ...]``).

    Args:
        path: the result file.
        id_map: ``image_id -> ID`` (or ``-> {"ID", "width", "height"}``) as a dict or a json file (see
            :func:`read_id_map`); None when ``image_id`` already is the CrowdHuman ``ID`` string.
        category_ids: keep only these ``category_id`` values (None keeps all).

    Returns:
        one :class:`DTRecord` per image, in order of first appearance; detections keep file order.
    """
    path = os.fspath(path)
    if isinstance(id_map, (str, os.PathLike)):
        id_map = read_id_map(id_map)
    data = _read_json(path)
    if not isinstance(data, list):
        raise _err(path, 0, f"a COCO result file must hold a json list, got {type(data).__name__}")
    groups: dict[str, list] = {}
    sizes: dict[str, tuple] = {}
    for i, d in enumerate(data):
        key = f"[{i}]"
        if not isinstance(d, Mapping):
            raise _err(path, 0, f"entry {key} must be an object, got {type(d).__name__}")
        for k in ("image_id", "bbox", "score"):
            if k not in d:
                raise _err(path, 0, f"missing key '{key}.{k}'")
        if category_ids is not None and d.get("category_id") not in category_ids:
            continue
        rid, w, h = _lookup(id_map, d["image_id"])
        if not isinstance(rid, str):
            hint = "no id_map given and image_id is not a string" if id_map is None else "not in the id_map"
            raise _err(path, 0, f"key '{key}.image_id' = {d['image_id']!r}: {hint}")
        groups.setdefault(rid, []).append((i, d))
        sizes[rid] = (w, h)
    out = []
    for rid, entries in groups.items():
        items = [d for _, d in entries]
        labels = [f"[{i}]" for i, _ in entries]
        boxes, scores = _boxes_scores(items, path, 0, "results", "bbox", labels)
        w, h = sizes[rid]
        out.append(DTRecord(ID=rid, boxes=boxes, scores=scores, width=w, height=h, source=path, line=0))
    return out


def read_detections(
    path: str | os.PathLike,
    id_map: Mapping | str | os.PathLike | None = None,
    category_ids: set[int] | None = None,
) -> list[DTRecord]:
    """Read detections, choosing the format from the content: a file starting with ``[`` is a COCO-style result
    list (:func:`read_coco_results`), anything else is odgt (:func:`read_dt_odgt`)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CrowdHuman detection file not found: {path}")
    with open(path, "rb") as f:  # the first non-blank byte decides; decoding errors are the readers' to report
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        return read_coco_results(path, id_map=id_map, category_ids=category_ids)
    return read_dt_odgt(path)
