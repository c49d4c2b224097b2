"""Learning self-reasoning: trajectories from public QA data (no extra needed), and LoRA
training and export (the `train` extra)."""
