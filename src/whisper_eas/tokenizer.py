"""Whisper's special tokens and text decoding, from a checkpoint's tokenizer.json.

The `tokenizers` library alone is enough here; timestamp tokens are computed from
`<|notimestamps|>` as openai/whisper does (they follow it in the vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from whisper_eas.errors import ConfigError

MULTILINGUAL_VOCAB = 51865  # multilingual Whisper vocabularies have 51865+ tokens, English-only ones 51864


def is_multilingual(vocab_size: int) -> bool:
    """The vocabulary size is what tells a multilingual checkpoint from an English-only one."""
    return vocab_size >= MULTILINGUAL_VOCAB

TASKS = ("transcribe", "translate")


@dataclass(frozen=True)
class WhisperTokenizer:
    """Special token ids plus encode/decode for one Whisper vocabulary."""

    tokenizer: Tokenizer
    eot: int
    sot: int
    sot_prev: int
    sot_lm: int
    no_speech: int
    no_timestamps: int
    transcribe: int
    translate: int
    languages: dict[str, int]  # "en" -> token id (multilingual models)
    multilingual: bool

    @classmethod
    def for_model(cls, model_dir: Path, vocab_size: int) -> "WhisperTokenizer":
        """The tokenizer.json of a checkpoint folder, multilingual or not by its vocabulary size."""
        return cls.from_file(model_dir / "tokenizer.json", multilingual=is_multilingual(vocab_size))

    @classmethod
    def from_file(cls, path: str | Path, multilingual: bool) -> "WhisperTokenizer":
        tok = Tokenizer.from_file(str(path))
        ids = {t.content: i for i, t in tok.get_added_tokens_decoder().items()}
        languages = {
            name[2:-2]: i
            for name, i in ids.items()
            if name.startswith("<|") and name.endswith("|>") and 2 <= len(name) - 4 <= 3 and name[2:-2].isalpha()
        }
        return cls(
            tokenizer=tok,
            eot=ids["<|endoftext|>"],
            sot=ids["<|startoftranscript|>"],
            sot_prev=ids["<|startofprev|>"],
            sot_lm=ids["<|startoflm|>"],
            no_speech=ids.get("<|nospeech|>", ids.get("<|nocaptions|>")),
            no_timestamps=ids["<|notimestamps|>"],
            transcribe=ids["<|transcribe|>"],
            translate=ids["<|translate|>"],
            languages=languages if multilingual else {},
            multilingual=multilingual,
        )

    @property
    def timestamp_begin(self) -> int:
        return self.no_timestamps + 1

    def sot_sequence(self, language: str | None = "en", task: str = "transcribe") -> list[int]:
        """The decoder prompt: <|startoftranscript|> [<|lang|> <|task|>]."""
        if not self.multilingual:
            return [self.sot]
        if task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {task!r}")
        if language not in self.languages:
            raise ConfigError(f"unknown language {language!r}; known: {', '.join(sorted(self.languages))}")
        return [self.sot, self.languages[language], self.transcribe if task == "transcribe" else self.translate]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """Text of the ordinary tokens (special and timestamp tokens dropped)."""
        return self.tokenizer.decode([i for i in ids if i < self.eot])

    def non_speech_tokens(self) -> list[int]:
        """Tokens for speaker tags and symbols, as openai/whisper's `suppress_tokens='-1'` lists them."""
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
        miscellaneous = set("♩♪♫♬♭♮♯")
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in symbols + list(miscellaneous):
            for tokens in (self.encode(symbol), self.encode(" " + symbol)):
                if len(tokens) == 1 or symbol in miscellaneous:
                    result.add(tokens[0])
        return sorted(result)
