"""`ragtune prepare`: training pairs with guarded hard negatives and a held-out split."""
