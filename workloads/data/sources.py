"""Read a company's data: CSV / Parquet tables and image folders, local or through pyarrow filesystems.

Paths are local paths or URIs pyarrow understands (``s3://bucket/key``; an S3-compatible endpoint via
``?endpoint_override=host:port`` or ``AWS_ENDPOINT_URL``). Every problem raises ``DataError`` with one
line naming the path or column and what is wrong.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


class DataError(ValueError):
    """The data at a path is missing or does not fit the template; the message is one line."""


def _open(path: str) -> tuple[pafs.FileSystem, str, pafs.FileInfo]:
    try:
        if "://" in path:
            fs, inner = pafs.FileSystem.from_uri(path)
        else:
            fs, inner = pafs.LocalFileSystem(), os.path.abspath(path)
        info = fs.get_file_info(inner)
    except (OSError, ValueError) as exc:
        raise DataError(f"data path {path!r}: cannot be opened ({_first_line(exc)})") from None
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"data path {path!r}: does not exist")
    return fs, inner, info


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_table(path: str) -> pd.DataFrame:
    """A CSV or Parquet file, or a folder of Parquet files, as a DataFrame."""
    fs, inner, info = _open(path)
    try:
        if info.type == pafs.FileType.Directory:
            table = pq.read_table(inner, filesystem=fs)
        elif inner.lower().endswith(".csv"):
            with fs.open_input_stream(inner) as stream:
                table = pacsv.read_csv(stream)
        elif inner.lower().endswith((".parquet", ".pq")):
            table = pq.read_table(inner, filesystem=fs)
        else:
            raise DataError(
                f"data path {path!r}: expected a {', '.join(TABLE_SUFFIXES)} file or a folder of Parquet files"
            )
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise DataError(f"data path {path!r}: cannot be read as a table ({_first_line(exc)})") from None
    frame = table.to_pandas()
    if frame.empty:
        raise DataError(f"data path {path!r}: has no rows")
    return frame


def require_columns(
    frame: pd.DataFrame, path: str, columns: Sequence[str], numeric: bool = True, allow_missing: bool = False
) -> dict[str, int]:
    """Check the columns exist (and are numeric, and complete unless ``allow_missing``); DataError naming the
    first bad one. Returns the missing values per column that has some (to impute and report)."""
    missing: dict[str, int] = {}
    for column in columns:
        if column not in frame.columns:
            raise DataError(
                f"data path {path!r}: column {column!r} is missing (has {', '.join(map(str, frame.columns))})"
            )
        if numeric and not pd.api.types.is_numeric_dtype(frame[column]):
            raise DataError(
                f"data path {path!r}: column {column!r} is not numeric (dtype {frame[column].dtype}, "
                f"e.g. {_first_non_number(frame[column])!r})"
            )
        gaps = int(frame[column].isna().sum())
        if numeric and gaps and (not allow_missing or gaps == len(frame)):
            raise DataError(
                f"data path {path!r}: column {column!r} has {gaps} missing values"
                + (" (all of them)" if gaps == len(frame) else "")
            )
        if gaps:
            missing[str(column)] = gaps
    return missing


def _first_non_number(series: pd.Series) -> object:
    numbers = pd.to_numeric(series, errors="coerce")
    bad = series[numbers.isna() & series.notna()]
    return bad.iloc[0] if len(bad) else series.iloc[0]


def read_image_folder(path: str, image_size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images under ``path/<class>/*.png`` as grayscale floats in [0, 1], shape (N, 1, S, S), labels, class names."""
    from PIL import Image

    fs, inner, info = _open(path)
    if info.type != pafs.FileType.Directory:
        raise DataError(f"data path {path!r}: is not a folder of class sub-folders")
    classes = sorted(
        i.base_name for i in fs.get_file_info(pafs.FileSelector(inner)) if i.type == pafs.FileType.Directory
    )
    if len(classes) < 2:
        raise DataError(f"data path {path!r}: needs at least two class sub-folders, found {classes or 'none'}")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(
            i.path
            for i in fs.get_file_info(pafs.FileSelector(f"{inner}/{name}", recursive=True))
            if i.type == pafs.FileType.File and i.path.lower().endswith(IMAGE_SUFFIXES)
        )
        if not files:
            raise DataError(f"data path {path!r}: class folder {name!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
        for file in files:
            try:
                with fs.open_input_file(file) as handle:
                    image = Image.open(io.BytesIO(handle.read())).convert("L").resize((image_size, image_size))
            except Exception as exc:
                raise DataError(f"data path {path!r}: image {file!r} cannot be read ({_first_line(exc)})") from None
            images.append(np.asarray(image, dtype=np.float32) / 255.0)
            labels.append(label)
    return np.stack(images)[:, None], np.asarray(labels, dtype=np.int64), classes
