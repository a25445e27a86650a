"""Rebuild data/corpus.jsonl.zst from two Debian packages (run once by a maintainer; nothing runs it at train time).

Why these sources: both are public-domain English prose that Debian ships, so the corpus is reproducible from a
package mirror without touching any web site. See data/README.md for the licences.

    apt-get download r-cran-janeaustenr bible-kjv-text && apt-get install bible-kjv && pip install rdata
    python data/build_corpus.py --austen-deb r-cran-janeaustenr_*.deb --output data/corpus.jsonl.zst
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import tempfile
import zlib
from pathlib import Path

import zstandard

AUSTEN_TITLES = {"sensesensibility": "Sense and Sensibility", "prideprejudice": "Pride and Prejudice",
                 "mansfieldpark": "Mansfield Park", "emma": "Emma", "northangerabbey": "Northanger Abbey",
                 "persuasion": "Persuasion"}
CHAPTER = re.compile(r"^(CHAPTER|Chapter)\s+[0-9IVXLC]+\.?$")


def austen_novels(deb: Path) -> dict:
    """Each novel's lines, read from the package's R lazy-load database (.rdx index + zlib blobs in .rdb)."""
    import rdata

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        base = Path(tmp) / "usr/lib/R/site-library/janeaustenr/data/Rdata"
        index = rdata.conversion.convert(rdata.parser.parse_data(gzip.decompress(base.with_suffix(".rdx").read_bytes())))
        blob = base.with_suffix(".rdb").read_bytes()
        novels = {}
        for name, (offset, length) in index["variables"].items():
            raw = zlib.decompress(blob[int(offset) + 4:int(offset) + int(length)])
            novels[str(name)] = [str(line) for line in rdata.conversion.convert(rdata.parser.parse_data(raw))]
    return novels


def reflow(lines: list) -> str:
    """Join hard-wrapped lines into paragraphs separated by one blank line."""
    paragraphs, current = [], []
    for line in lines + [""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return "\n\n".join(paragraphs)


def austen_documents(novels: dict):
    """One document per chapter; the title pages before chapter one are left out."""
    for key, title in AUSTEN_TITLES.items():
        lines = novels[key]
        starts = [i for i, line in enumerate(lines) if CHAPTER.match(line.strip())]
        for n, start in enumerate(starts):
            end = starts[n + 1] if n + 1 < len(starts) else len(lines)
            heading = lines[start].strip()
            body = reflow(lines[start + 1:end])
            if body:
                yield {"text": f"{heading}\n\n{body}", "source": "austen", "title": f"{title}, {heading}"}


def kjv_documents():
    """One document per chapter, verses one per line, from the `bible` program of package bible-kjv."""
    out = subprocess.run(["bible", "-l10000", "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True).stdout
    chapters = re.split(r"\n(?=\S[^\n]* \d+\n)", "\n" + out.strip("\n"))
    for chunk in chapters:
        lines = [line.strip() for line in chunk.strip("\n").splitlines() if line.strip()]
        if len(lines) < 2:
            continue
        heading, verses = lines[0], lines[1:]
        yield {"text": heading + "\n\n" + "\n".join(verses), "source": "kjv", "title": heading}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--austen-deb", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=Path("data/corpus.jsonl.zst"))
    args = parser.parse_args()
    docs = list(austen_documents(austen_novels(args.austen_deb))) + list(kjv_documents())
    payload = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")
    args.output.write_bytes(zstandard.ZstdCompressor(level=19).compress(payload))
    print(f"{len(docs)} documents, {len(payload):,} bytes of JSONL, {args.output.stat().st_size:,} bytes compressed")


if __name__ == "__main__":
    main()
