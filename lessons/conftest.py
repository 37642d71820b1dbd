"""pytest (nbval) collects only the instructor's notebooks in source/: the folders nbgrader
creates next to them hold student versions (without solutions) and graded copies."""

collect_ignore_glob = [
    f"{folder}/*"
    for folder in (
        "release",
        "submitted",
        "autograded",
        "feedback",
        "source_with_tests",
        "solution",
    )
]
