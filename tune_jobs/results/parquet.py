"""The results tables as Parquet: written through the experiment's pyarrow filesystem, read back checked.

Reading a table back refuses a missing, damaged or foreign file in one paragraph naming it and how to
rebuild it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from textune.errors import TextuneError
from tune_jobs.experiment import BEST_DIR, EVALUATIONS_FILE, RESULTS_FILE, Experiment
from tune_jobs.results.table import ExperimentResults

# The columns (and their kinds) the readers of each table rely on; a table without them is not textune's.
TABLE_COLUMNS = {
    RESULTS_FILE: {
        "trial_id": "text",
        "status": "text",
        "best_metric": "number",
        "best_val_bpc": "number",
        "best_val_ppl": "number",
        "floor_bpc": "number",
        "tokens": "number",
        "flops": "number",
        "wall_time_s": "number",
        "device_kind": "text",
        "device_hours": "number",
        "checkpoint": "text",
        "trial_dir": "text",
    },
    EVALUATIONS_FILE: {"trial_id": "text", "tokens": "number"},
}


def write_tables(results: ExperimentResults, trials_path: str, evaluations_path: str, filesystem: Any) -> None:
    """Write both tables as Parquet through a pyarrow filesystem."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for frame, path in ((results.trials, trials_path), (results.evaluations, evaluations_path)):
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, filesystem=filesystem)


def read_trials(experiment: Experiment) -> pd.DataFrame:
    """The per-trial table written at the end of the last run (or resume)."""
    return _read_table(experiment, RESULTS_FILE)


def read_evaluations(experiment: Experiment) -> pd.DataFrame:
    """The per-evaluation table written beside the per-trial one."""
    return _read_table(experiment, EVALUATIONS_FILE)


def _read_table(experiment: Experiment, name: str) -> pd.DataFrame:
    """A results table, refused in one paragraph naming the file when it is missing, damaged or not textune's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    filesystem, path = experiment.filesystem()
    where = f"{experiment.root}/{name}"
    try:
        table = pq.read_table(f"{path}/{name}", filesystem=filesystem)
    except FileNotFoundError as exc:
        raise TextuneError(
            f"experiment {experiment.root} has no {name} yet (its run did not reach the end).",
            rebuild_hint(experiment)
            if experiment.simulation() is not None
            else f"Finish it with: textune resume {experiment.root}",
        ) from exc
    except (pa.ArrowException, OSError) as exc:
        raise TextuneError(
            f"{where} is damaged and cannot be read as Parquet ({exc}).", rebuild_hint(experiment)
        ) from exc
    wrong = [
        f"{column} ({'missing' if column not in table.schema.names else table.schema.field(column).type})"
        for column, kind in TABLE_COLUMNS[name].items()
        if column not in table.schema.names or not _is_kind(table.schema.field(column).type, kind)
    ]
    if wrong and table.num_columns:  # a search without a single trial writes tables without columns
        raise TextuneError(
            f"{where} is not a textune {name} table: these columns are missing or of the wrong "
            f"type: {', '.join(wrong)}.",
            rebuild_hint(experiment),
        )
    return table.to_pandas()


def _is_kind(arrow_type: Any, kind: str) -> bool:
    import pyarrow as pa

    if pa.types.is_null(arrow_type):  # a column that is null in every row, e.g. no trial kept a checkpoint
        return True
    if kind == "number":
        return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def rebuild_hint(experiment: Experiment) -> str:
    """How to rebuild the files the end of a run writes (results.parquet, evaluations.parquet, best/); for a
    simulated search, the replay that wrote them."""
    simulation = experiment.simulation()
    if simulation is not None:
        return (
            f"This is a simulated search: textune replay {simulation.get('replayed_from', 'EXPERIMENT')} writes it "
            "again (it rewrites replay/searches/)."
        )
    return (
        f"Rebuild it from Ray Tune's records with: textune resume {experiment.root} (it rewrites "
        f"{RESULTS_FILE}, {EVALUATIONS_FILE} and {BEST_DIR}/)."
    )
