"""The image count for `rank --score-protocol released` on a CPU, from benchmarks/released_scoring_noise.py's result
(issue 44, item 2). The rule, written down before the measurement: the smallest of 1,024, 2,048, 3,072 and 5,120
test images whose ranking of the benchmark's archs is within 0.01 of the all-10,000-image ranking's tau (paired)
and agrees with it at tau >= 0.90; 0 (all 10,000) when none is.

  python scripts/released_images.py benchmarks/results/released_scoring_noise-....json   # prints the count
"""
import json
import sys

MAX_DIFF, MIN_AGREE = 0.01, 0.90


def choose(result: dict) -> int:
    noise = result["image_noise"]
    for n in ("1024", "2048", "3072", "5120"):
        row = noise.get(n)
        if row and abs(row["minus_all"]["diff"]) <= MAX_DIFF and row["tau_between_first_and_all"] >= MIN_AGREE:
            return int(n)
    return 0


if __name__ == "__main__":
    print(choose(json.loads(open(sys.argv[1]).read())))
