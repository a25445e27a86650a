"""Questions about the shipped corpus with exact answers: which book a passage is from, a verse's reference,
the verse that follows, and word counts of a sentence.

Why from the corpus: the model read these texts in pretraining, so the questions test recall and reading, and
the answers are facts of the text (no annotator, no download). Everything here is deterministic for a given
corpus file and `random.Random` seed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

from myllm_mc.data.readers import iter_documents

_VERSE = re.compile(r"^(\d+) (.+)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_ABBREVIATIONS = ("Mr.", "Mrs.", "Dr.", "St.", "Col.", "Capt.", "Sir.", "Messrs.")


@dataclass(frozen=True)
class Verse:
    book: str
    chapter: int
    number: int
    text: str

    @property
    def reference(self) -> str:
        return f"{self.book} {self.chapter}:{self.number}"


@dataclass(frozen=True)
class Sentence:
    book: str          # the novel's title
    text: str


@dataclass
class Corpus:
    verses: List[Verse]            # in Bible order
    sentences: List[Sentence]      # Austen sentences of 6..35 words, no double quotes, in novel order
    kjv_books: List[str]           # in Bible order
    novels: List[str]              # in corpus order


def load_corpus(path: str | Path) -> Corpus:
    """Verses of the KJV and clean single sentences of the Austen novels from data/corpus.jsonl.zst."""
    verses: List[Verse] = []
    sentences: List[Sentence] = []
    for _, (text, source, title) in iter_documents([Path(path)], ("text", "source", "title"), strict=True):
        book, _, chapter = title.rpartition(" ")
        if source == "kjv":
            for line in text.split("\n")[1:]:
                match = _VERSE.match(line)
                if match:
                    verses.append(Verse(book, int(chapter), int(match.group(1)), match.group(2).strip()))
        else:
            novel = title.split(",")[0]
            for paragraph in text.split("\n")[1:]:
                for sentence in _SENTENCE_END.split(paragraph.strip()):
                    sentence = " ".join(sentence.split())
                    if _clean_sentence(sentence):
                        sentences.append(Sentence(novel, sentence))
    kjv_books = list(dict.fromkeys(v.book for v in verses))
    novels = list(dict.fromkeys(s.book for s in sentences))
    return Corpus(verses, sentences, kjv_books, novels)


def _clean_sentence(sentence: str) -> bool:
    words = sentence.split()
    return (6 <= len(words) <= 35 and sentence[0].isupper() and '"' not in sentence and "_" not in sentence
            and sentence[-1] in ".!?" and words[-1] not in _ABBREVIATIONS and not sentence.startswith("CHAPTER"))


# --- questions ----------------------------------------------------------------------------------------------
# Each returns (prompt text, answer, plausible wrong answer); `rng` picks the wrong answer only.
def book_of_verse(verse: Verse, books: Sequence[str], rng) -> tuple:
    prompt = f'Which book of the King James Bible is this verse from? "{verse.text}"'
    return prompt, verse.book, _other(verse.book, _neighbours(books, verse.book), rng)


def book_of_sentence(sentence: Sentence, novels: Sequence[str], rng) -> tuple:
    prompt = f'Which Jane Austen novel is this sentence from? "{sentence.text}"'
    return prompt, sentence.book, _other(sentence.book, novels, rng)


def reference_of_verse(verse: Verse, rng) -> tuple:
    prompt = f'Give the book, chapter and verse of this King James Bible verse: "{verse.text}"'
    wrong = (f"{verse.book} {verse.chapter}:{verse.number + 1}" if rng.random() < 0.5 or verse.number == 1
             else f"{verse.book} {verse.chapter}:{verse.number - 1}")
    return prompt, verse.reference, wrong


def next_verse(verse: Verse, following: Verse, after_that: Verse | None) -> tuple:
    prompt = (f'In the King James Bible, {verse.reference} reads: "{verse.text}" '
              f"What is the text of the next verse?")
    wrong = after_that.text if after_that is not None else verse.text
    return prompt, following.text, wrong


def word_count(text: str, where: str, rng) -> tuple:
    prompt = f'How many words (separated by spaces) are in this sentence from {where}? "{text}"'
    count = len(text.split())
    return prompt, str(count), str(count + rng.choice((-2, -1, 1, 2)))


def _neighbours(books: Sequence[str], book: str) -> Sequence[str]:
    """Books near `book` in Bible order: a wrong answer of the same kind (Gospel for Gospel, prophet for prophet)."""
    at = books.index(book)
    return books[max(0, at - 3): at + 4]


def _other(correct: str, choices: Sequence[str], rng) -> str:
    return rng.choice([c for c in choices if c != correct])
