"""One adapter module per benchmarked system; see :mod:`systems.common` for the interface."""
