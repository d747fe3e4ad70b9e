"""Where jobs run: a backend interface and its implementations."""
