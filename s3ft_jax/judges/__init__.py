"""Judges decide whether a response is correct: numeric match, sandboxed code, LLM/heuristic."""
