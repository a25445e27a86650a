#!/usr/bin/env python
"""Build the verifiable task sets in data/tasks/ from the shipped corpus (fixed seed; re-running is byte-identical).

    python tools/build_tasks.py                       # → data/tasks/{sft,dpo,prompts}/TASK.{train,test}.jsonl
    python tools/build_tasks.py --output /tmp/t --seed 7
"""

import argparse
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from myllm_mc.tasks.generate import COUNTS, FORMAT_INSTRUCTION, TEST_PERCENT, build_task_sets, write_task_sets  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DESCRIPTIONS = {
    "arithmetic": "`What is 7 + 5?` → `12`: every a+b, a−b (0 ≤ b ≤ a ≤ 19) and a×b (a, b ≤ 9); exact integer",
    "counting": "letters in a word (`How many times does the letter \"e\" appear in \"presence\"?` → `3`) and "
                "words in a 2–8-word phrase; exact integer",
    "format": f"an arithmetic or counting question + `{FORMAT_INSTRUCTION.strip()}` → `<answer>12</answer>`; "
              f"correct only inside the tags",
    "corpus_book": "which KJV book / which Austen novel a verse or sentence is from → `Genesis`, "
                   "`Pride and Prejudice`; exact, case-insensitive",
    "corpus_reference": "book, chapter and verse of a KJV verse → `Genesis 1:3`; exact, case-insensitive",
    "corpus_next_verse": "the text of the verse after a given one → the verse; exact after collapsing whitespace",
    "corpus_word_count": "words (split on spaces) in a KJV verse or Austen sentence → integer",
}


def readme(files, seed: int) -> str:
    counts = Counter()
    sizes = Counter()
    for relative, payload in files.items():
        kind, name = relative.split("/")
        task, split, _ = name.split(".")
        counts[(task, kind, split)] = payload.count(b"\n")
        sizes[kind] += len(payload)
    tasks = list(COUNTS)
    rows = "\n".join(f"| `{t}` | " + " | ".join(f"{counts[(t, k, s)]:,}" for k in ("sft", "dpo", "prompts")
                                                  for s in ("train", "test")) + " |" for t in tasks)
    total = " | ".join(f"**{sum(counts[(t, k, s)] for t in tasks):,}**" for k in ("sft", "dpo", "prompts")
                       for s in ("train", "test"))
    described = "\n".join(f"- `{t}`: {DESCRIPTIONS[t]}" for t in tasks)
    size_line = ", ".join(f"{k}/ {sizes[k] / 1e6:.2f} MB" for k in ("sft", "dpo", "prompts"))
    return f"""# Verifiable task sets (generated — do not edit by hand)

Built by `python tools/build_tasks.py --seed {seed}` from the shipped corpus `data/corpus.jsonl.zst`; re-running
it gives byte-identical files (tested). Used for SFT, DPO (correct vs plausible wrong answer), GRPO rewards and
task accuracy; checked by `myllm_mc.tasks` (verifiers and the reward registry). See docs/data.md.

**Licence.** Derived from the shipped public-domain corpus (Jane Austen's novels and the King James Bible, see
data/README.md); the generated questions and answers are released into the public domain as well.

## Tasks
{described}

## Files (records per file)
| task | sft train | sft test | dpo train | dpo test | prompts train | prompts test |
|---|---|---|---|---|---|---|
{rows}
| all | {total} |

Sizes: {size_line}.

- `sft/TASK.SPLIT.jsonl`: `{{"id", "task", "answer", "messages": [{{"role": "user", ...}}, {{"role": "assistant", ...}}]}}`
  (HF/OpenAI chat format; preprocess with `tools/preprocess_data.py --chat`).
- `dpo/TASK.SPLIT.jsonl`: `{{"id", "task", "answer", "messages": [user turn], "chosen": str, "rejected": str}}`
  (chosen/rejected are the assistant reply's content; the train pairs are the first SFT-train problems).
- `prompts/TASK.SPLIT.jsonl`: `{{"id", "task", "answer", "prompt": str, "messages": [user turn]}}` for GRPO and
  evaluation (`prompt` is the user turn's text). The test prompts are exactly the SFT/DPO test problems.

**Split.** Each problem has a key (the expression, the counted word or phrase, the corpus passage); a key is held
out when the first 32 bits of its SHA-256 fall in the lowest {TEST_PERCENT} % (the format task reuses arithmetic
and counting keys). No prompt and no key of a test file occurs in any train file of any task (tested). Within a
split, problems are shuffled with the seed and the first N kept. A passage that occurs twice in the corpus is never
asked about (its book would be ambiguous).
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=os.path.join(REPO, "data", "corpus.jsonl.zst"))
    parser.add_argument("--output", default=os.path.join(REPO, "data", "tasks"))
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    if not os.path.isfile(args.corpus):
        print(f"build_tasks.py: {args.corpus}: no such file — fix: pass --corpus data/corpus.jsonl.zst",
              file=sys.stderr)
        return 2
    files = build_task_sets(args.corpus, args.seed)
    write_task_sets(files, args.output, readme(files, args.seed))
    records = sum(p.count(b"\n") for p in files.values())
    print(f"build_tasks: {len(files)} files, {records:,} records, {sum(map(len, files.values())) / 1e6:.2f} MB "
          f"→ {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
