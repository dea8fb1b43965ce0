"""Tables are pure functions of the results store: rows in, aggregate and formatted text out.

Each cell of a table is mean ± standard error over seeds (s.e. = sample s.d. / √seeds, blank
for a single seed). The floor row (sampler ``reference``) is the same statistic on exact
reference samples at the same n. Diverged and failed cells are shown as such, never as numbers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from benchmark.runner import REFERENCE_LABEL

GROUP = ["target", "sampler", "budget", "metric"]


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard error, seed count and status counts per (target, sampler, budget, metric).

    Returns:
        One row per group with columns ``mean, se, num_seeds, num_ok, num_diverged, num_failed,
        n, nfe`` (means over seeds of the finite values of ok cells).
    """
    if rows.empty:
        return pd.DataFrame(columns=GROUP + ["mean", "se", "num_seeds", "num_ok",
                                             "num_diverged", "num_failed", "n", "nfe"])
    frame = rows.copy()
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    ok = frame["status"].eq("ok") & np.isfinite(frame["value"])

    def summarise(group: pd.DataFrame) -> pd.Series:
        values = group.loc[ok.loc[group.index], "value"].to_numpy(dtype=float)
        count = len(values)
        return pd.Series({
            "mean": values.mean() if count else math.nan,
            "se": values.std(ddof=1) / math.sqrt(count) if count > 1 else math.nan,
            "num_seeds": group["seed"].nunique(),
            "num_ok": int(group["status"].eq("ok").sum()),
            "num_diverged": int(group["status"].eq("diverged").sum()),
            "num_failed": int(group["status"].eq("failed").sum()),
            "n": int(group["n"].max()),
            "nfe": float(pd.to_numeric(group["nfe"], errors="coerce").mean()),
        })

    return (frame.groupby(GROUP, sort=True)[frame.columns.tolist()]
            .apply(summarise).reset_index())


def format_value(mean: float, se: float, digits: int = 3) -> str:
    """``mean ± se`` with ``digits`` significant digits on the mean."""
    if not math.isfinite(mean):
        return "n/a"
    text = f"{mean:.{digits}g}"
    return text if not math.isfinite(se) else f"{text} ± {se:.2g}"


def _row_label(sampler: str, budget: int) -> str:
    return "reference (floor)" if sampler == REFERENCE_LABEL else f"{sampler}@{budget}"


def metric_table(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Samplers@budget × targets for one metric, as formatted strings; floor row last.

    A group whose cells all diverged or failed reads ``diverged`` / ``failed``; a partly
    diverged group shows the mean of the rest with the count of diverged seeds.
    """
    summary = aggregate(rows[rows["metric"] == metric])
    if summary.empty:
        return pd.DataFrame()
    cells: dict[tuple[str, str], str] = {}
    order: list[tuple[int, str, int]] = []
    for record in summary.itertuples(index=False):
        label = _row_label(record.sampler, int(record.budget))
        if record.num_ok == 0 and record.num_diverged:
            text = "diverged"
        elif record.num_ok == 0 and record.num_failed:
            text = "failed"
        else:
            text = format_value(record.mean, record.se)
            if record.num_diverged:
                text += f" ({record.num_diverged} diverged)"
        cells[(label, record.target)] = text
        key = (1 if record.sampler == REFERENCE_LABEL else 0, record.sampler, int(record.budget))
        if key not in order:
            order.append(key)
    row_labels = [_row_label(sampler, budget) for _, sampler, budget in sorted(order)]
    targets = sorted(summary["target"].unique())
    table = pd.DataFrame([[cells.get((r, t), "") for t in targets] for r in row_labels],
                         index=pd.Index(row_labels, name="sampler@budget"), columns=targets)
    return table


def caption(rows: pd.DataFrame, metric: str) -> str:
    subset = rows[rows["metric"] == metric]
    if subset.empty:
        return f"{metric}: no rows"
    num_seeds = subset.groupby(["target", "sampler", "budget"])["seed"].nunique().max()
    sizes = ", ".join(str(v) for v in sorted(subset["n"].unique()))
    return (f"{metric}: mean ± s.e. over {num_seeds} seed(s), n = {sizes} samples per cell; "
            f"'reference (floor)' is the same statistic on exact samples.")


def to_markdown(table: pd.DataFrame) -> str:
    return table.to_markdown() if not table.empty else "(empty)"
