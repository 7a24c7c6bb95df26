"""Pass `dvc repro`'s output through, folding its nine-line git hint ("To track the changes
with git, run: ... To enable auto staging, run: ...") into one line, so the comparison
table that ./run.sh prints next is not pushed off the screen."""

from __future__ import annotations

import signal
import sys

START = "To track the changes with git, run:"
END = "dvc config core.autostage true"


def main() -> None:
    folding, files = False, ""
    for line in sys.stdin:
        text = line.strip()
        if text == START:
            folding = True
            continue
        if folding:
            if text.startswith("git add "):
                files = text.removeprefix("git add ")
            if text == END:
                folding = False
                print(f"To keep these results, commit them: git add {files}" if files else "", flush=True)
            continue
        sys.stdout.write(line)
        sys.stdout.flush()


if __name__ == "__main__":
    # Ctrl-C stops DVC, which then writes its last lines and closes the pipe: relay them to the end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    main()
