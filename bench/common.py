# pylint: disable=print-used
"""Shared by the benchmark scripts: the line bench/run tabulates."""


def figure(name, left_label, left, right_label, right, goal):
    """Print a ratio with both of its sides, measured in the same run."""
    ratio = left / right if right else float("nan")
    print(f"@figure|{name}|{left_label}|{left:.4g}|{right_label}|{right:.4g}|{ratio:.3f}|{goal}")
    return ratio
