"""The targets the benchmarks are held to (issue 7; the table reader's from issue 3), in one
place: each script prints them beside its figures and `python -m benchmarks` judges them."""

WALL_RATIO = 1.10  # flows / bare wall seconds, process start-up included, a run of about 30 s
TRAIN_RATIO = 1.03  # flows / bare seconds in the training loops
THROUGHPUT_RATIO = 0.95  # flows / bare training samples per second, at least
ABSORB_SECONDS = {"lora": 0.5, "error_memory": 0.010}  # one window of 1,000 samples
CORRECTION_ADDED = 0.20  # the error memory's correction over a plain forward of 256 rows
# "Flat" read as: the largest per-unit time at most 1.5x the smallest while the size grows
# 16x (windows) or 100x (buffer rows); a cost linear in the size would show 16x / 100x.
FLAT = 1.5
PREPARE_SECONDS = 20.0  # 1,000,000 rows x 50 features through `prepare`, less than
PREPARE_MEMORY = 3.0  # peak memory above the import baseline / the input in memory, less than
