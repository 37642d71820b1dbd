"""Hooks for every pytest run in the repository, including nbval on book/ and lessons/."""

# Stored notebook numbers are compared digit for digit only on the kind of machine that
# produced them (see tests/nbval_machine.py).
pytest_plugins = ["tests.nbval_machine"]
