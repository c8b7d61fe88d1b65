"""A paired data set's item table, memory-mapped: its texts stay on disk until read.

``items.parquet`` is compressed, so reading it decodes every row into memory (a million
recipes' texts and ingredients: gigabytes). ``mapped_items`` instead returns a DataFrame of
Arrow columns over ``.cache/items.arrow``, an Arrow copy of the parquet written once (a
batch at a time, each batch validated) and stamped with the parquet's size and modification
time (rewritten when they change): a column's pages are read only when its rows are. The
dashboard, ``ivae index`` and ``ivae.data.paired.load_paired`` all read the table this way.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

ITEMS_CACHE = Path(".cache") / "items.arrow"  # in the data set's folder, beside the images'
BATCH_ROWS = 65536


def mapped_items(directory: Path) -> pd.DataFrame:
    """``items.parquet`` as a DataFrame of Arrow columns memory-mapped from an Arrow file,
    written once under ``.cache/`` (streamed a batch at a time, each batch validated) and
    rewritten when the parquet changes; read into memory as before when the folder is not
    writable."""
    from ivae.data.paired import ITEMS, read_items

    source = directory / ITEMS
    if not source.is_file():
        return read_items(directory)  # its message says what is missing
    stamp = f"{source.stat().st_size}:{source.stat().st_mtime_ns}".encode()
    cache = directory / ITEMS_CACHE
    table = _open_items_cache(cache, stamp)
    if table is None:
        try:
            _write_items_cache(source, cache, stamp)
        except OSError:
            return read_items(directory).reset_index(drop=True)
        table = _open_items_cache(cache, stamp)
    return table.to_pandas(types_mapper=pd.ArrowDtype, split_blocks=True, self_destruct=False)


def _open_items_cache(cache: Path, stamp: bytes):
    import pyarrow as pa

    if not cache.is_file():
        return None
    try:
        table = pa.ipc.open_file(pa.memory_map(str(cache))).read_all()
    except (OSError, pa.ArrowInvalid):
        return None
    return table if (table.schema.metadata or {}).get(b"source") == stamp else None


def _write_items_cache(source: Path, cache: Path, stamp: bytes) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ivae.data.paired import validate_items
    from ivae.io import atomic_write

    parquet = pq.ParquetFile(source)
    schema = parquet.schema_arrow.with_metadata({b"source": stamp})

    def write(handle) -> None:
        first = 0
        with pa.ipc.new_file(handle, schema) as writer:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                validate_items(batch.to_pandas(), source, first)
                writer.write_batch(batch.replace_schema_metadata(schema.metadata))
                first += batch.num_rows

    atomic_write(cache, write)
