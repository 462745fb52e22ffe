"""Speed benchmarks (timing lives here and in scripts/, never in tests)."""
