"""Language models, the trainer (one trial), checkpoints, metrics and generation.

Imports Ray nowhere at module level.
"""
