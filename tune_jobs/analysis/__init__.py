"""Analysis of finished experiments: hyperparameter importance, confirmation runs, text quality and the report."""
