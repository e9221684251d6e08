"""Tasks: their data, prompts, gold normalisation and judges."""
