"""`ragtune evaluate`: exact retrieval metrics of models and baselines on a qrels split."""
