"""PySpark jobs: pure DataFrame transforms for silver and gold, with IO only in ``main()``s."""
