"""Great Expectations suites for bronze, silver and gold, and the runner that gates a layer."""
