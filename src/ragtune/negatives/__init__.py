"""Hard negatives: the false-negative guard that mines them and the store that re-mining updates."""
