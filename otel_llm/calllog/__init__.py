"""The LLM call log: every priced call stored and queryable."""
