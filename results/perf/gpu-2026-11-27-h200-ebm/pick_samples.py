"""Print the sample files Figure 3 needs from the new mnist5k cells (seed 0 of its panels)."""
from pathlib import Path

import pandas as pd

from benchmark.plots_ebm import FIG3_PANELS

store = Path("results/paper-ebm")
for path in sorted((store / "cells").glob("*.csv")):
    row = pd.read_csv(path).iloc[0]
    sample = store / "samples" / f"{row['cell_id']}.pt"
    if (row["target"] == "mnist5k" and int(row["seed"]) == 0 and sample.is_file()
            and (row["sampler"], int(row["budget"])) in FIG3_PANELS):
        print(sample)
