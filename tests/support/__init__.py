"""What the tests share that is not a test: the servers and processes they start (fake LLM
provider, OTLP receiver, collector CLI, Rotel, PostgreSQL, Prometheus), free ports, the
virtualenvs of the isolation tests and the SDKs the instrumentor tests drive. Test modules
import from here; fixtures live in conftest."""
