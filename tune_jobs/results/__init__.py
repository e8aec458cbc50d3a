"""An experiment's results: a row per trial and a row per evaluation, read from Ray Tune's own records.

``table``       the tables' vocabulary: config columns, the best trial, values as plain Python data
``collect``     Ray Tune's records -> the tables, with each trial's status (models.status.TrialStatus)
``parquet``     writing the tables and reading them back, refusing a missing, damaged or foreign file
``checkpoints`` a trial checkpoint's checksum on storage, and the checkpoint an experiment stands for (best/)
``warm_start``  the configs of a previous experiment's best trials, to start a search from
``restarts``    the restarts of each trial and the progress each gave up
``ray_errors``  the message of a trial's last failure, from Ray's text error log

See docs/architecture.md.
"""
