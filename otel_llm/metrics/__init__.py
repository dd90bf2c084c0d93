"""Recording derived LLM calls as metrics: Prometheus and the OpenTelemetry metrics API."""
