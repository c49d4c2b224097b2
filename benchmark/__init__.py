"""Public benchmarks: datasets, scoring and the runner behind `rag bench` and `rag eval`."""
