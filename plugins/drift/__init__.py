"""Built-in drift tests: two-sample tests from scipy.stats, registered by name."""
