"""Algorithm 1: build the training set D' (own answer / paraphrase / gold) in a run directory."""
