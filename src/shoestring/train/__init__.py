"""Training: typed config, engine, checkpoints, budgets and recipes."""
