"""Replaying searches on recorded learning curves: a simulated clock drives textune's own searchers and schedulers.

``table``             learning-curve tables (Parquet + a manifest with a checksum), built from any finished experiment
``lookup``            the metric, wall time and FLOPs of one evaluation, recorded or extrapolated
``simulator``         the discrete-event loop with W workers around Ray Tune's searcher and scheduler objects
``strategies``        the search strategies a replay compares, as variants of a job spec
``compare``           many paired seeds per strategy: cost to reach a target, IQM and bootstrap confidence intervals
``plot``              anytime regret against tokens and device-hours
``experiment_replay`` ``textune replay``: checks, the comparison, and what it writes into EXPERIMENT/replay/

See docs/replay.md.
"""
