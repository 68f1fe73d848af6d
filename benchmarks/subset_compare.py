"""Does a difference between two finished runs grow or fade with the gallery's size? Test subsets.

    .venv/bin/python benchmarks/subset_compare.py BASE_RUN OTHER_RUN [BASE_RUN OTHER_RUN ...]
        [--subsets 100] [--subset-classes 48 96 192 384 768]

Pairs of run directories (one pair per seed): each pair's saved test embeddings are re-scored on
`--subsets` random sets of N test classes for each N, and OTHER's MAP@R and R@1 minus BASE's are
averaged over the sets and pairs. A validation split of N classes sees the difference that the row
for N shows, so this says whether validation can measure a change at all (CCP's lead fades as the
gallery grows; a change that separates look-alike classes needs a gallery dense in them). For the
record only: nothing is chosen on the test classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _runs import load_test_embeddings, print_subset_differences, subset_differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="BASE OTHER pairs, one per seed")
    parser.add_argument("--subsets", type=int, default=100)
    parser.add_argument("--subset-classes", nargs="*", type=int, default=[48, 96, 192, 384, 768])
    args = parser.parse_args()
    if len(args.runs) % 2:
        raise SystemExit(f"give run directories in BASE OTHER pairs; got {len(args.runs)} directories")
    pairs = [(args.runs[i], args.runs[i + 1]) for i in range(0, len(args.runs), 2)]

    def load(probe: str, pair: int):
        return load_test_embeddings(pairs[pair][0 if probe == "plain" else 1])

    for classes in args.subset_classes:
        diffs = subset_differences(load, ["other"], list(range(len(pairs))), args.subsets, classes)
        print_subset_differences(diffs, f"\nOTHER minus BASE, {len(pairs)} pair(s), {args.subsets} random sets of "
                                        f"{classes} test classes each")


if __name__ == "__main__":
    main()
