"""Real drift by year: the Massachusetts ACS employment table (2015-2018) that `fetch` took
from NannyML's wheel into data/external/acs-employment-ma. One window per year, window 0
(2015) the pretrain split; a seeded sample of `rows_per_year` rows per year keeps a CPU run
short. Features are standardized with window 0's training rows, as for any table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from components.config import StreamParams
from components.data.fetch import ACS_DIR, ACS_FEATURES, ACS_FILE, ACS_LABEL
from components.data.windowing import PreparedStream, windows_from_rows
from components.errors import StreamError


def acs_stream(stream: StreamParams, root: Path) -> PreparedStream:
    acs = stream.acs
    assert acs is not None
    path = root / "data" / "external" / ACS_DIR / ACS_FILE
    if not path.is_file():
        raise StreamError(f"{path}: not found; the fetch stage fills it (dvc repro, or python -m flows.fetch)")
    try:
        table = pl.read_parquet(path, columns=[*ACS_FEATURES, "year", ACS_LABEL])
    except Exception as error:  # polars raises several types for a bad file
        raise StreamError(f"{path}: unreadable ({str(error).splitlines()[0]})") from None
    present = set(table["year"].unique().to_list())
    missing = [y for y in acs.years if y not in present]
    if missing:
        raise StreamError(f"params.yaml: stream.acs.years: {missing} not in {path.name} (years present: {sorted(present)})")
    table = table.filter(pl.col("year").is_in(acs.years)).with_row_index("row")
    if acs.rows_per_year is not None:
        short = table.group_by("year").len().filter(pl.col("len") < acs.rows_per_year).sort("year")
        if short.height:
            raise StreamError(f"params.yaml: stream.acs.rows_per_year: {acs.rows_per_year} rows asked, year "
                              f"{short['year'][0]} has {short['len'][0]}")
        years = table["year"].to_numpy()
        rng = np.random.default_rng(stream.seed)
        keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(years == year), acs.rows_per_year, replace=False)
                                       for year in acs.years]))
        table = table[keep]
    x = table.select(ACS_FEATURES).to_numpy().astype(np.float32)
    y = table[ACS_LABEL].to_numpy().astype(np.int64)
    window = {year: k for k, year in enumerate(acs.years)}
    ids = table["year"].replace_strict(window, return_dtype=pl.Int64).to_numpy()
    prepared = windows_from_rows(x, y, ids, len(acs.years), ["not-employed", "employed"], stream.test_fraction,
                                 stream.seed, str(path), normalize=True)
    prepared.extra.update(features=list(ACS_FEATURES), label=ACS_LABEL, window_cut={"column": "year", "years": acs.years},
                          rows_per_year=acs.rows_per_year)
    return prepared
