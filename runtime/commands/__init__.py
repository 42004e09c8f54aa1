"""Sub-commands of `strat` that belong to no single runtime area."""
