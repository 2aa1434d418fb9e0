"""Speed benchmarks, each measured side by side in one run (``locseg bench <what>``)."""
