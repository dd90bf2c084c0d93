"""The collector service: OTLP in, GenAI spans priced and measured, OTLP out."""
