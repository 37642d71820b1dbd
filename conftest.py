"""Hooks for every pytest run in the repository, including nbval on book/ and lessons/."""

# Stored notebook numbers are compared digit for digit only on the kind of machine that
# produced them (see tests/nbval_machine.py).
pytest_plugins = ["tests.nbval_machine"]

# The files that take minutes, longest first (the clean-clone run of 2026-12-07, two workers;
# a notebook's time is its nbval run, the quick runs are one file). pytest-xdist's
# `--dist loadfile` hands out one file at a time to whichever worker is free, in collection
# order (`make test` passes --no-loadscope-reorder, which would otherwise order the files by
# their number of tests): starting with the longest and ending with the many short files
# keeps both workers busy to the end, instead of one long notebook running alone at the end.
LONGEST_FIRST = [
    "tests/test_notebooks_quick.py",
    "book/03_gradient/maml_omniglot.ipynb",
    "book/02_metric/siamese.ipynb",
    "tests/test_lessons.py",
    "book/06_transfer/choosing_source.ipynb",
    "book/06_transfer/transfer_omniglot.ipynb",
    "book/03_gradient/reptile_omniglot.ipynb",
    "book/05_rl/bandit_table.ipynb",
    "book/06_transfer/transfer_maml.ipynb",
    "book/03_gradient/first_order_omniglot.ipynb",
    "book/02_metric/relation.ipynb",
    "book/04_memory/mann_omniglot.ipynb",
    "book/02_metric/protonet.ipynb",
    "book/02_metric/matching.ipynb",
    "book/05_rl/rl2_bandits.ipynb",
    "book/03_gradient/metasgd_anil_omniglot.ipynb",
    "book/04_memory/hypernet_omniglot.ipynb",
    "book/07_compression/compress_protonet.ipynb",
    "tests/test_colab_path.py",
    "tests/test_browser.py",
]


def pytest_collection_modifyitems(config, items) -> None:
    """Run the files of LONGEST_FIRST first, in that order; the others keep theirs (a stable
    sort, so the cells of a notebook and the tests of a file stay in order)."""
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
