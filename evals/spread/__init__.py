"""The manipulated-knowledge-spread eval family (after "Flooding Spread of Manipulated
Knowledge in LLM-Based Multi-Agent Communities"). See docs/evals-spread.md."""
