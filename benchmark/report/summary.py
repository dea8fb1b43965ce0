"""Summary tables: one row per (target, sampler@budget), metrics side by side, then costs.

The per-metric tables of :mod:`benchmark.report.tables` put targets in columns. A paper table puts
*metrics* in columns and adds the cost ledger (docs/metrics.md#cost-ledger): Table 2
(BLR: accuracy, test log-likelihood, KSD, posterior moment errors, NFE, wall-clock) and Table 3
(image EBMs: FID in both views, class coverage, NFE, seconds per 1,000 samples, speed-up over
annealed Langevin at 200 steps, training seconds, break-even number of samples) and the
scaling table (gaussian_d / funnel_d: KSD, energy distance, NFE, training evaluations, sampling
and training seconds, so cost and quality read against d together). Each is one
:class:`SummaryLayout` in :data:`SUMMARY_LAYOUTS` (a new family adds one entry);
:func:`write_summaries` writes ``<layout>.md``/``.tex`` for every layout that :func:`applies`
(the store holds its first metric and, if it names targets, no other target), so stores of
other families are untouched.

Metric cells reuse :func:`benchmark.report.aggregate.aggregate` and its marks (bold =
significantly best for that target and metric, † = below the floor); the floor row shows
metrics only. Cost
columns (:data:`COST_COLUMNS`) come from the per-cell means over seeds of the stored
``nfe``, ``train_nfe``, ``sample_seconds``, ``train_seconds`` and ``n``; the derived ones are

* ``s / 1k samples``: ``1000 · sample_seconds / n``;
* ``speed-up``: ``t_base / t`` with ``t`` the sampling seconds per sample and ``t_base`` the
  layout's baseline's at the same target, n and device. A row with the denoising suffix
  ``+dn`` is compared with the baseline's ``+dn`` row (like for like) when the store has it;
* ``break-even n``: for a sampler with a training cost ``T``, the number of samples ``N`` at
  which ``T + N t = N t_base``, i.e. ``N = T / (t_base − t)``; ``never`` when ``t >= t_base``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.metrics.info import METRIC_INFO
from benchmark.report.aggregate import aggregate, natural_key, row_key, row_label
from benchmark.report.formatting import (
    TableStyle,
    cell_text,
    format_count,
    format_ratio,
    latex_escape,
    render_latex,
    render_markdown,
)
from benchmark.schema import DENOISE_SUFFIX, REFERENCE_LABEL, denoised_label
from benchmark.store import atomic_write_bytes


@dataclass(frozen=True)
class CostColumn:
    """A cost column: header, the caption's sentence for it, and its text from a cost record."""

    header: str
    meaning: str
    text: Callable[[pd.Series], str]


#: Cost column key -> column. ``record`` is a row of :func:`derived_costs`.
COST_COLUMNS: dict[str, CostColumn] = {
    "nfe": CostColumn("NFE", "target evaluations per sample while sampling (neural samplers: "
                      f"0, or 1 with the final denoising step '{DENOISE_SUFFIX}'; minibatch "
                      "evaluations count their share m/N)",
                      lambda record: format_count(record["nfe"])),
    "train_nfe": CostColumn("train evals", "target evaluations during neural training (rows)",
                            lambda record: format_count(record["train_nfe"])),
    "sample_seconds": CostColumn("sample s", "sampling wall-clock seconds for n samples",
                                 lambda record: format_count(record["sample_seconds"])),
    "per_1000": CostColumn("s / 1k samples", "sampling wall-clock per 1,000 samples",
                           lambda record: format_count(record["per_1000"])),
    "speedup": CostColumn("speed-up", "sampling time per sample of the baseline {base} (its "
                          f"'{DENOISE_SUFFIX}' row for '{DENOISE_SUFFIX}' rows) over this row's, "
                          "same target, n and device",
                          lambda record: format_ratio(record["speedup"])),
    "train_seconds": CostColumn("train s", "neural training wall-clock seconds",
                                lambda record: format_count(record["train_seconds"])),
    "break_even": CostColumn("break-even n", "samples after which training + sampling costs "
                             "less than {base} ('never' if sampling is not faster)",
                             lambda record: format_count(record["break_even"])),
}


@dataclass(frozen=True)
class SummaryLayout:
    """One summary table.

    Attributes:
        title: caption title.
        metrics: metric columns in order; the first decides whether the table is written.
        costs: keys of :data:`COST_COLUMNS`, in order.
        baseline: ``(sampler label, budget)`` of ``speedup`` and ``break_even`` (needed by them).
        row_header: header of the row-label column.
        floor_note: what the ``reference (floor)`` row is, for the caption.
        target_names: registry names of the targets the layout is for (empty: any target);
            it is written only for a store whose every target is one of them, so a layout on
            common metrics (KSD) stays out of other families' stores.
    """

    title: str
    metrics: tuple[str, ...]
    costs: tuple[str, ...]
    baseline: tuple[str, int] | None = None
    row_header: str = "sampler@budget"
    floor_note: str = "the metric on n reference draws"
    target_names: frozenset[str] = frozenset()


#: Layout name -> layout (a registry: a new family adds one entry).
SUMMARY_LAYOUTS: dict[str, SummaryLayout] = {
    "table2_blr": SummaryLayout(
        title="Table 2 (Bayesian logistic regression)",
        metrics=("accuracy", "test_loglik", "ksd", "mean_error", "std_error"),
        costs=("nfe", "train_nfe", "sample_seconds", "train_seconds")),
    "table3_ebm": SummaryLayout(
        title="Table 3 (image targets): sampler@steps, FID views, class coverage, cost",
        metrics=("fid_data", "fid_ref", "fid_exact", "class_tv", "class_max_share",
                 "mode_weight_error", "mode_recall"),
        costs=("nfe", "per_1000", "speedup", "train_seconds", "break_even"),
        baseline=("annealed_langevin", 200), row_header="sampler@steps",
        floor_note="each metric's noise floor at the same n (image metrics: n training "
                   "images; FID (EBM ref.): the FID between the two reference runs; on exact-"
                   "sample targets, two independent exact sets)"),
    "table_scaling": SummaryLayout(
        title="Scaling (gaussian_d, funnel_d): quality and cost as the dimension grows",
        metrics=("ksd", "energy_distance"),
        costs=("nfe", "train_nfe", "sample_seconds", "train_seconds"),
        target_names=frozenset({"gaussian_d", "funnel_d"})),
}


def applies(layout: SummaryLayout, rows: pd.DataFrame) -> bool:
    """Whether ``layout`` describes the store ``rows``: it holds the layout's first metric and,
    for a layout restricted to some targets, only those targets."""
    if layout.metrics[0] not in set(rows["metric"]):
        return False
    if not layout.target_names:
        return True
    names = set(rows["target_name"].astype(str)) if "target_name" in rows else set()
    return bool(names) and names <= layout.target_names


def cell_costs(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of the cost columns per (target, sampler, budget).

    Returns:
        Indexed by ``(target, sampler, budget)``: ``nfe``, ``train_nfe``, ``sample_seconds``,
        ``train_seconds``, ``n``, ``device`` (the first seen), ``denoise`` (the final
        denoising step was applied) and ``per_sample`` (seconds).
    """
    cells = rows.drop_duplicates("cell_id").copy()
    cells["denoise"] = cells["denoise"].eq(True)
    for column in ("nfe", "train_nfe", "sample_seconds", "train_seconds", "n"):
        cells[column] = pd.to_numeric(cells[column], errors="coerce").astype(float)
    cells["budget"] = cells["budget"].astype(int)
    costs = cells.groupby(["target", "sampler", "budget"]).agg(
        nfe=("nfe", "mean"), train_nfe=("train_nfe", "mean"),
        sample_seconds=("sample_seconds", "mean"), train_seconds=("train_seconds", "mean"),
        n=("n", "max"), device=("device", "first"), denoise=("denoise", "max"))
    costs["per_sample"] = costs["sample_seconds"] / costs["n"]
    return costs


def baseline_label(denoise: bool, baseline: str) -> str:
    """The baseline's label for a row: its denoised twin's for a row with the final step."""
    return denoised_label(baseline) if denoise else baseline


def speedup_and_break_even(record: pd.Series, base: pd.Series) -> tuple[float, float]:
    """A row's sampling speed-up over a baseline row, and the break-even number of samples.

    With training seconds ``T`` (0 for an untrained sampler) and sampling seconds per sample
    ``t``, ``N`` samples cost ``T + N t``. The break-even ``N*`` is the number of samples from
    which the row's total stays below the baseline's: ``max(0, (T − T_base) / (t_base − t))``
    when the row samples faster, ``inf`` (never) when it does not, NaN when neither row was
    trained (the speed-up says it all). Both are NaN when the rows differ in ``n`` or device.

    Args:
        record, base: rows of :func:`cell_costs` (``per_sample``, ``train_seconds``, ``n``,
            ``device``).
    """
    if (base["n"] != record["n"] or base["device"] != record["device"]
            or not record["per_sample"] > 0):
        return math.nan, math.nan
    speedup = float(base["per_sample"] / record["per_sample"])
    trained = [float(row["train_seconds"]) for row in (record, base)]
    if not any(math.isfinite(seconds) for seconds in trained):
        return speedup, math.nan  # nothing to amortise
    train, train_base = (seconds if math.isfinite(seconds) else 0.0 for seconds in trained)
    saving = float(base["per_sample"] - record["per_sample"])  # per sample, in the row's favour
    if saving <= 0:
        return speedup, math.inf
    return speedup, max(0.0, (train - train_base) / saving)


def derived_costs(costs: pd.DataFrame, baseline: tuple[str, int] | None) -> pd.DataFrame:
    """``costs`` plus ``per_1000``, ``speedup`` and ``break_even`` (see the module docstring
    and :func:`speedup_and_break_even`).

    The baseline must share the row's target, n and device; otherwise both ratios are NaN
    (as they are without a baseline).
    """
    out = costs.copy()
    out["per_1000"] = 1000.0 * out["per_sample"]
    pairs = []
    for (target, _, _), record in out.iterrows():
        base = None
        if baseline is not None:
            key = (target, baseline_label(bool(record["denoise"]), baseline[0]), baseline[1])
            if key not in out.index and record["denoise"]:
                key = (target, baseline[0], baseline[1])  # no denoised baseline stored
            base = out.loc[key] if key in out.index else None
        pairs.append((math.nan, math.nan) if base is None
                     else speedup_and_break_even(record, base))
    out["speedup"] = [speedup for speedup, _ in pairs]
    out["break_even"] = [break_even for _, break_even in pairs]
    return out


def summary_table(rows: pd.DataFrame, layout: SummaryLayout,
                  style: TableStyle = "markdown") -> pd.DataFrame:
    """Rows ``target | sampler@budget`` (floor row last per target), metric then cost columns.

    Args:
        rows: result rows of a store.
        layout: which metrics, costs and baseline.
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
    headers = [COST_COLUMNS[name].header for name in layout.costs]
    records = []
    for target, sampler, budget in keys:
        record = {"target": target, layout.row_header: row_label(sampler, budget)}
        for metric in present:
            header = METRIC_INFO[metric].pretty_name if metric in METRIC_INFO else metric
            key = (target, sampler, budget, metric)
            record[header] = (cell_text(indexed.loc[key], style) if key in indexed.index
                              else "")
        if sampler == REFERENCE_LABEL:  # the floor row: metrics only, no sampling cost
            record.update(dict.fromkeys(headers, ""))
        else:
            cost = costs.loc[(target, sampler, budget)]
            for name, header in zip(layout.costs, headers, strict=True):
                text = COST_COLUMNS[name].text(cost)
                record[header] = latex_escape(text) if style == "latex" else text
        records.append(record)
    return pd.DataFrame(records).set_index(["target", layout.row_header])


def summary_caption(rows: pd.DataFrame, layout: SummaryLayout) -> str:
    """Plain-text caption: seeds, n, devices, directions, the floor and every cost column."""
    sampled = rows[~rows["sampler"].eq(REFERENCE_LABEL)]
    seeds = sorted(sampled["seed"].unique())
    sizes = ", ".join(str(n) for n in sorted(sampled["n"].astype(int).unique()))
    devices = ", ".join(sorted({str(d) for d in sampled["device"].dropna()}))
    directions = "; ".join(
        f"{METRIC_INFO[m].pretty_name} "
        f"{'lower' if METRIC_INFO[m].lower_is_better else 'higher'} is better"
        for m in layout.metrics if m in METRIC_INFO and m in set(rows["metric"]))
    base = f"{layout.baseline[0]}@{layout.baseline[1]}" if layout.baseline else ""
    costs = "; ".join(f"{COST_COLUMNS[name].header}: "
                      f"{COST_COLUMNS[name].meaning.format(base=base)}"
                      for name in layout.costs)
    return (f"{layout.title}: mean ± s.e. over {len(seeds)} seed(s) (seeds "
            f"{', '.join(map(str, seeds))}), n = {sizes} samples per cell, device {devices} "
            f"({directions}). Bold: significantly best for its target and metric (paired over "
            f"seeds, two standard errors); †: below the reference floor; 'reference (floor)': "
            f"{layout.floor_note}. Costs are means over seeds. {costs}.")


def write_summaries(rows: pd.DataFrame, directory: Path) -> dict[str, str]:
    """Write ``<layout>.md``/``.tex`` (atomically) for each applicable layout; returns the
    Markdown texts."""
    texts = {}
    for name, layout in SUMMARY_LAYOUTS.items():
        if not applies(layout, rows):
            continue
        table = summary_table(rows, layout, "markdown")
        if table.empty:
            continue
        caption = summary_caption(rows, layout)
        texts[name] = f"{caption}\n\n{render_markdown(table.reset_index().set_index('target'))}\n"
        atomic_write_bytes(directory / f"{name}.md", texts[name].encode())
        # Both index levels (target, sampler@budget) are plain labels that render_latex escapes.
        latex = render_latex(summary_table(rows, layout, "latex"), latex_escape(caption),
                             f"tab:{name}")
        atomic_write_bytes(directory / f"{name}.tex", latex.encode())
    return texts


__all__ = ["COST_COLUMNS", "SUMMARY_LAYOUTS", "CostColumn", "SummaryLayout", "applies",
           "cell_costs", "derived_costs", "summary_caption", "summary_table", "write_summaries"]
