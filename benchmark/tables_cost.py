"""Metrics-and-cost tables: quality columns beside the cost ledger and its derived ratios.

Table 3 of the paper (image EBMs) reads, per sampler@steps: quality metrics (mean ± s.e. over
seeds), target NFE, seconds per 1,000 samples, the speed-up over a baseline sampler@budget
(annealed Langevin at 200 steps) on the same target, n and device, the training seconds of
neural samplers and their break-even number of samples (METRICS.md, "Cost and efficiency").
A :class:`CostLayout` names the metrics and the baseline; :func:`write_cost_tables` writes
``<layout>.md``/``.tex`` for every layout whose first metric the store holds, so stores of
other families are untouched.

Derived columns, from the per-cell means over seeds of the stored ``sample_seconds``,
``train_seconds`` and ``n`` (all pure functions of the store):

* ``s / 1k``: ``1000 · sample_seconds / n``, the sampling cost per 1,000 samples;
* ``speed-up``: ``t_base / t`` with ``t`` the sampling seconds per sample and ``t_base`` the
  baseline's at the same target, n and device. A row with the denoising suffix ``+dn`` is
  compared with the baseline's ``+dn`` row (like for like), when the store has it;
* ``break-even n``: for a sampler with a training cost ``T``, the number of samples ``N`` at
  which ``T + N t = N t_base``, i.e. ``N = T / (t_base − t)``; ``never`` when ``t >= t_base``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.formatting import (
    TableStyle,
    cell_text,
    format_count,
    format_ratio,
    latex_escape,
    render_latex,
    render_markdown,
)
from benchmark.matrix import DENOISE_SUFFIX
from benchmark.metrics import METRICS
from benchmark.runner import REFERENCE_LABEL
from benchmark.tables import aggregate, natural_key, row_key, row_label


@dataclass(frozen=True)
class CostLayout:
    """One metrics-and-cost table.

    Attributes:
        metrics: quality columns in order; the first decides whether the table is written.
        baseline: ``(sampler label, budget)`` of the speed-up and break-even reference.
        title: caption title.
    """

    metrics: tuple[str, ...]
    baseline: tuple[str, int]
    title: str


#: Layout name -> layout (a registry: a new family adds one entry).
COST_LAYOUTS: dict[str, CostLayout] = {
    "table3_ebm": CostLayout(
        metrics=("fid_data", "fid_ref", "class_tv", "class_max_share"),
        baseline=("annealed_langevin", 200),
        title="Table 3 (image EBMs): sampler@steps, FID in both views, class coverage, cost"),
}

COST_HEADERS = ("NFE", "s / 1k samples", "speed-up", "train s", "break-even n")


def cell_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of the cost columns per (target, sampler, budget).

    Returns:
        Indexed by ``(target, sampler, budget)``: ``nfe``, ``sample_seconds``,
        ``train_seconds``, ``n``, ``device`` (the first seen) and ``per_sample`` (seconds).
    """
    cells = rows.drop_duplicates("cell_id").copy()
    for column in ("nfe", "sample_seconds", "train_seconds", "n"):
        cells[column] = pd.to_numeric(cells[column], errors="coerce").astype(float)
    cells["budget"] = cells["budget"].astype(int)
    costs = cells.groupby(["target", "sampler", "budget"]).agg(
        nfe=("nfe", "mean"), sample_seconds=("sample_seconds", "mean"),
        train_seconds=("train_seconds", "mean"), n=("n", "max"), device=("device", "first"))
    costs["per_sample"] = costs["sample_seconds"] / costs["n"]
    return costs


def baseline_label(sampler: str, baseline: str) -> str:
    """The baseline's label for ``sampler``: with the ``+dn`` suffix iff ``sampler`` has it."""
    return baseline + DENOISE_SUFFIX if sampler.endswith(DENOISE_SUFFIX) else baseline


def derived_costs(costs: pd.DataFrame, baseline: tuple[str, int]) -> pd.DataFrame:
    """``costs`` plus ``per_1000``, ``speedup`` and ``break_even`` (see the module docstring).

    The baseline must share the row's target, n and device; otherwise both ratios are NaN.
    """
    out = costs.copy()
    out["per_1000"] = 1000.0 * out["per_sample"]
    speedups, break_evens = [], []
    for (target, sampler, _), record in out.iterrows():
        key = (target, baseline_label(sampler, baseline[0]), baseline[1])
        if key not in out.index and sampler.endswith(DENOISE_SUFFIX):
            key = (target, baseline[0], baseline[1])  # no denoised baseline stored
        base = out.loc[key] if key in out.index else None
        if (base is None or base["n"] != record["n"] or base["device"] != record["device"]
                or not record["per_sample"] > 0):
            speedups.append(math.nan)
            break_evens.append(math.nan)
            continue
        speedups.append(float(base["per_sample"] / record["per_sample"]))
        train = float(record["train_seconds"])
        if not math.isfinite(train):
            break_evens.append(math.nan)  # nothing to amortise
        elif base["per_sample"] > record["per_sample"]:
            break_evens.append(train / float(base["per_sample"] - record["per_sample"]))
        else:
            break_evens.append(math.inf)
    out["speedup"] = speedups
    out["break_even"] = break_evens
    return out


def cost_table(rows: pd.DataFrame, layout: CostLayout,
               style: TableStyle = "markdown") -> pd.DataFrame:
    """Rows ``target | sampler@budget``, the layout's metric columns, then the cost columns.

    Args:
        rows: result rows of a store.
        layout: which metrics and which baseline.
        style: ``markdown`` or ``latex`` cell text.
    """
    present = [m for m in layout.metrics if m in set(rows["metric"])]
    summary = aggregate(rows[rows["metric"].isin(present)])
    if summary[~summary["sampler"].eq(REFERENCE_LABEL)].empty:
        return pd.DataFrame()
    costs = derived_costs(cell_costs(rows[~rows["sampler"].eq(REFERENCE_LABEL)]),
                          layout.baseline)
    keys = sorted({(t, s, int(b)) for t, s, b in
                   zip(summary["target"], summary["sampler"], summary["budget"], strict=True)},
                  key=lambda key: (natural_key(key[0]), row_key(key[1], key[2])))
    indexed = summary.set_index(["target", "sampler", "budget", "metric"])
    records = []
    for target, sampler, budget in keys:
        record = {"target": target, "sampler@steps": row_label(sampler, budget)}
        for metric in present:
            header = METRICS[metric].pretty_name if metric in METRICS else metric
            key = (target, sampler, budget, metric)
            record[header] = (cell_text(indexed.loc[key], style) if key in indexed.index
                              else "")
        if sampler == REFERENCE_LABEL:  # the floor row: metrics only, no sampling cost
            record.update(dict.fromkeys(COST_HEADERS, ""))
            records.append(record)
            continue
        cost = costs.loc[(target, sampler, budget)]
        values = (format_count(cost["nfe"]), format_count(cost["per_1000"]),
                  format_ratio(cost["speedup"]), format_count(cost["train_seconds"]),
                  format_count(cost["break_even"]))
        if style == "latex":
            values = tuple(latex_escape(value) for value in values)
        record.update(dict(zip(COST_HEADERS, values, strict=True)))
        records.append(record)
    return pd.DataFrame(records).set_index(["target", "sampler@steps"])


def cost_caption(rows: pd.DataFrame, layout: CostLayout) -> str:
    """Plain-text caption: seeds, n, devices, directions and what each cost column means."""
    sampled = rows[~rows["sampler"].eq(REFERENCE_LABEL)]
    seeds = sorted(sampled["seed"].unique())
    sizes = ", ".join(str(n) for n in sorted(sampled["n"].astype(int).unique()))
    devices = ", ".join(sorted({str(d) for d in sampled["device"].dropna()}))
    directions = "; ".join(
        f"{METRICS[m].pretty_name} {'lower' if METRICS[m].lower_is_better else 'higher'} is "
        f"better" for m in layout.metrics if m in METRICS and m in set(rows["metric"]))
    base = f"{layout.baseline[0]}@{layout.baseline[1]}"
    return (f"{layout.title}: mean ± s.e. over {len(seeds)} seed(s) (seeds "
            f"{', '.join(map(str, seeds))}), n = {sizes} samples per cell, device {devices} "
            f"({directions}). Bold: significantly best for its target and metric (paired over "
            f"seeds, two standard errors); †: below the reference floor; 'reference (floor)': "
            f"each metric's noise floor at the same n (image metrics: n training images, and "
            f"for FID (EBM ref.) the FID between the two reference runs). NFE: target "
            f"evaluations per sample while sampling (neural samplers: 0, or 1 with the final "
            f"denoising step '{DENOISE_SUFFIX}'); s / 1k samples: sampling wall-clock per "
            f"1,000 samples; speed-up: sampling time per sample of {base} (its "
            f"'{DENOISE_SUFFIX}' row for '{DENOISE_SUFFIX}' rows) over this row's, same "
            f"target, n and device; train s: neural training seconds; break-even n: samples "
            f"after which training + sampling costs less than {base} ('never' if sampling is "
            f"not faster).")


def write_cost_tables(rows: pd.DataFrame, directory: Path) -> dict[str, str]:
    """Write ``<layout>.md``/``.tex`` for each applicable layout; returns the Markdown texts."""
    texts = {}
    stored = set(rows["metric"])
    for name, layout in COST_LAYOUTS.items():
        if layout.metrics[0] not in stored:
            continue
        table = cost_table(rows, layout, "markdown")
        if table.empty:
            continue
        caption = cost_caption(rows, layout)
        texts[name] = f"{caption}\n\n{render_markdown(table.reset_index().set_index('target'))}\n"
        (directory / f"{name}.md").write_bytes(texts[name].encode())
        latex = cost_table(rows, layout, "latex").reset_index()
        (directory / f"{name}.tex").write_bytes(
            render_latex(latex.set_index("target"), latex_escape(caption),
                         f"tab:{name}").encode())
    return texts


__all__ = ["COST_LAYOUTS", "CostLayout", "cell_costs", "cost_caption", "cost_table",
           "derived_costs", "write_cost_tables"]
