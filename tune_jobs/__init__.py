"""Ray Tune searches: job specs, search spaces, schedulers, searchers, the Tuner, results and the CLI.

This is the only package that speaks Ray Tune.
"""
