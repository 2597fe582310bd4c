"""`ragtune train`: the sentence-transformers Trainer plus held-out selection, re-mining and checkpoints."""
