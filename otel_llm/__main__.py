"""``python -m otel_llm``: the ``otel-llm`` command line."""

import sys

from otel_llm.cli import main

sys.exit(main())
