#!/usr/bin/env python3
"""Makes Petrel's committed test fixtures in Tests/Fixtures/.

Run from the repository root:  python3 scripts/make_fixtures.py

Needs (CPU only, no network): torch, transformers, accelerate, tokenizers, sentencepiece, gguf,
safetensors, numpy, jinja2 (scripts/setup-reference.sh installs them), and the default model
$PETREL_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-model.sh fetches it;
PETREL_CACHE defaults to ~/.cache/petrel).

Everything is seeded, so a re-run rewrites the same files. Every weight in the fixtures is
random and made here; the only real model used (SmolLM2) is read from the cache to record
goldens and is never copied into the repository. Tests/Fixtures/README.md (written at the
end) says what each file is.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import copy
import io
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "Tests" / "Fixtures"
TMP = Path(os.environ.get("PETREL_FIXTURES_TMP", "/tmp/petrel-fixtures"))
CACHE = Path(os.environ.get("PETREL_CACHE", str(Path.home() / ".cache" / "petrel")))
SMOLLM2_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PATH = CACHE / "models" / SMOLLM2_NAME

NOTES: list[str] = []  # caveats found while running; they go into the README
T0 = time.time()


def log(msg: str) -> None:
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def note(msg: str) -> None:
    log("NOTE: " + msg)
    NOTES.append(msg)


# --------------------------------------------------------------------------------------
# JSON output: lists of scalars on one line, containers indented; float32 values written
# with the shortest decimal that reads back as the same float32.
# --------------------------------------------------------------------------------------


def f32(x) -> float:
    return float(str(np.float32(x)))


def f32list(a) -> list:
    a = np.asarray(a, dtype=np.float32)
    return [float(str(v)) for v in a.reshape(-1)]


def _dump(obj, indent: int, level: int) -> str:
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {_dump(v, indent, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(obj, (list, tuple)):
        if not obj:
            return "[]"
        if all(not isinstance(v, (dict, list, tuple)) for v in obj):
            return "[" + ",".join(json.dumps(v, ensure_ascii=False) for v in obj) + "]"
        items = [pad + _dump(v, indent, level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + end + "]"
    if isinstance(obj, float):
        assert np.isfinite(obj), obj
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: Path, obj, indent: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dump(obj, indent, 0) + "\n", encoding="utf-8")
    log(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes)")


# --------------------------------------------------------------------------------------
# Training text for the two small tokenizers (written for this script).
# --------------------------------------------------------------------------------------

CORPUS = r"""
The storm petrel is a small seabird that spends most of its life far from land.
Sailors once believed the petrels walked on the water, and the name comes from Saint Peter.
It flies low over the waves, pattering its feet on the surface while it feeds on plankton.
A petrel can travel thousands of kilometres in a single season and still find its nest again.
In the evening the colony returns to the cliffs, and the burrows fill with soft, purring calls.
The weather was cold and windy, so we stayed inside, read books, and drank hot tea with lemon.
She said that she'd rather walk to the station than wait for the bus in the rain.
We're going to the market tomorrow; they've promised fresh bread, cheese, apples and honey.
I'm not sure what you'll think of it, but it's the best soup I've ever made.
Don't forget: the meeting starts at 9:30 on Monday, 14 October, in room 204.
The capital of France is Paris, the capital of Germany is Berlin, and the capital of Italy is Rome.
Machine learning is a field of computer science that studies algorithms which improve with data.
A language model predicts the next token given the previous tokens in a sequence.
The server receives a request, tokenizes the prompt, runs the model, and streams tokens back.
Inference throughput depends on batch size, sequence length, memory bandwidth and the kernels used.
Attention compares every query with every key, scales the scores, applies a softmax, and mixes values.
The key-value cache stores past keys and values so that each new token costs only one step.
Quantization stores weights in fewer bits, for example eight or four bits per value, with a scale.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 2048 3.14159 2.71828 1,000,000 99.9% $12.50
Dates like 2024-01-15 and times like 23:59:59 appear in logs, along with ids such as req-000123.
Hello, world! How are you today? I'm fine, thanks. And you? Great!!! Really?! Yes... maybe.
"Quotes", 'single quotes', (parentheses), [brackets], {braces}, <angles>, and #hashtags @mentions.
Visit https://example.com/docs/index.html or http://localhost:8000/v2/health/ready for status.
Email me at someone@example.org; the path is /usr/local/bin and C:\Program Files\Petrel.
THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG. The quick brown fox jumps over the lazy dog.
It's, it'S, IT'S, don't, DON'T, you're, YOU'RE, we've, WE'VE, I'm, I'M, you'll, YOU'LL, he'd, HE'D.
Café, naïve, résumé, façade, Zürich, São Paulo, Ångström, crème brûlée, jalapeño, coöperate.
def add(a, b):
    return a + b

def fibonacci(n: int) -> int:
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)

for i in range(10):
    print(f"{i}: {fibonacci(i)}")

class Petrel:
    def __init__(self, name):
        self.name = name

    def fly(self, distance_km=100):
        return f"{self.name} flew {distance_km} km"

import numpy as np
x = np.zeros((4, 64), dtype=np.float32)
y = x.reshape(-1).tolist()

struct Token: Hashable, Sendable {
    let id: Int32
    var text: String
}

func greet(_ name: String) -> String {
    return "Hello, \(name)!"
}

let tokens = [1, 504, 3575, 282].map { Token(id: $0, text: "") }
guard let first = tokens.first else { fatalError("empty") }

#include <stdio.h>
int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        printf("%d: %s\n", i, argv[i]);
    }
    return 0;
}

function sum(values) {
  return values.reduce((acc, v) => acc + v, 0);
}
const result = sum([1, 2, 3]);
console.log(`result = ${result}`);

fn main() {
    let v: Vec<u32> = (0..10).collect();
    println!("{:?}", v);
}

package main
import "fmt"
func main() { fmt.Println("hello") }

SELECT name, COUNT(*) AS n FROM requests WHERE status = 'ok' GROUP BY name ORDER BY n DESC;
<html><body><p class="note">Hello &amp; welcome</p></body></html>
{"model": "petrel", "max_tokens": 16, "temperature": 0.0, "stream": true}
curl -s -X POST localhost:8000/v2/models/ensemble/generate -d '{"text_input": "hi"}'
if [ -f "$FILE" ]; then echo "found"; else echo "missing" >&2; exit 1; fi
key: value
list:
  - one
  - two
	tabs	separate	these	columns
x == y && a != b || c <= d >= e -> f => g :: h ... i ?? j !! k
小鸟在海面上飞翔。今天的天气很好，我们去公园散步吧。
机器学习是人工智能的一个分支。语言模型可以生成文本。
中国的首都是北京。你好，世界！谢谢你的帮助。
海鳥は海の上を飛びます。今日はいい天気ですね。
東京は日本の首都です。ありがとうございます。
カタカナとひらがなと漢字を使います。
안녕하세요. 오늘 날씨가 좋네요. 감사합니다.
Emoji: 😀 😃 😄 😁 😂 🙂 🙃 😉 👍 👎 🎉 🚀 🌍 🐦 🌊 ❤️ ✨ 🔥 ✅ ❌
Thumbs 👍🏻 👍🏽 👍🏿 and a family 👨‍👩‍👧 and flags 🇫🇷 🇯🇵 and 🤖 robots.
Ελληνικά γράμματα, русский текст, עברית, العربية, हिन्दी, ไทย.
"""


def corpus_lines() -> list[str]:
    return [line for line in CORPUS.strip("\n").split("\n")]


# --------------------------------------------------------------------------------------
# Test strings for the tokenizer goldens.
# --------------------------------------------------------------------------------------


def test_strings() -> list[str]:
    s = [
        "",
        " ",
        "  ",
        "   ",
        "a",
        "A",
        "\n",
        "\t",
        "\r\n",
        "Hello",
        "hello",
        " hello",
        "hello ",
        "  hello  ",
        "Hello world",
        "Hello, world!",
        "The capital of France is",
        "What is machine learning?",
        "The quick brown fox jumps over the lazy dog.",
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG.",
        "A petrel can travel thousands of kilometres in a single season.",
        "Supercalifragilisticexpialidocious antidisestablishmentarianism",
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "This is a sentence. This is another one! And a third? Yes.",
        "multiple   spaces   between   words",
        "a  b",
        "a   b",
        "a    b",
        "x          y",
        "                ",
        "a\tb",
        "\t\tindented with tabs",
        "    indented with four spaces",
        "mixed \t whitespace \t here",
        "line1\nline2",
        "line1\r\nline2",
        "line1\rline2",
        "\n\n\n",
        "\r\n\r\n",
        "para one.\n\npara two.",
        "trailing newline\n",
        "\nleading newline",
        " \n \n ",
        "a \n b",
        "end with spaces   ",
        "   start with spaces",
        "tab at end\t",
        "0",
        "7",
        "42",
        "123",
        "1234",
        "12345",
        "123456789",
        "9876543210123456789",
        "3.14159",
        "2.71828182845904523536",
        "1,000,000",
        "1 000 000",
        "-17",
        "+42",
        "1e-5",
        "6.02e23",
        "0x1F",
        "0b1011",
        "v1.2.3",
        "$100.99",
        "50%",
        "+1 (555) 123-4567",
        "2024-01-15",
        "23:59:59",
        "in 2023 there were 365 days",
        "abc123def456",
        "room 204, floor 3",
        "1st 2nd 3rd 4th",
        "!!!",
        "?!?!",
        "...",
        "…",
        "—",
        "--",
        "-->",
        "<=>",
        "!!!???...",
        "((()))",
        "[]{}<>",
        "@#$%^&*",
        "a,b;c:d",
        "~`|\\",
        "\"quoted\" and 'single'",
        "“curly quotes” and ‘single curly’",
        "https://example.com/path?query=1&x=2#frag",
        "http://localhost:8000/v2/models/ensemble/generate",
        "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
        "mailto:user@example.org",
        "www.example.co.uk",
        "ftp://files.example.net/pub/file-1.2.tar.gz",
        "def add(a, b):\n    return a + b\n",
        "for i in range(10):\n\tprint(i)",
        "import numpy as np\nx = np.zeros((4, 64), dtype=np.float32)",
        "class Foo:\n    def __init__(self):\n        self.x = 1",
        "print(f\"{x!r:>10}\")",
        "lambda x: x ** 2",
        "let x: [Int] = [1, 2, 3].map { $0 * 2 }",
        "func greet(_ name: String) -> String { \"Hello, \\(name)!\" }",
        "guard let value = optional else { return nil }",
        "#include <stdio.h>\nint main(void) { return 0; }",
        "printf(\"%d\\n\", x);",
        "int *p = &a[i++];",
        "const f = (a, b) => a + b;",
        "console.log(`value: ${value}`);",
        "if (a === b && c !== d) { }",
        "fn main() { println!(\"{:?}\", v); }",
        "let v: Vec<u8> = Vec::with_capacity(16);",
        "package main\n\nimport \"fmt\"\n",
        "SELECT * FROM users WHERE id = 42;",
        "<html><body><p>Hi</p></body></html>",
        "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
        "curl -X POST http://localhost:8000/v1/chat/completions -H 'Content-Type: application/json'",
        "echo $HOME && ls -la | grep '^d' > out.txt 2>&1",
        "key: value\nlist:\n  - one\n  - two",
        "x == y && a != b || c <= d >= e",
        "a->b, c::d, e?.f, g!!, h ?? i",
        "/* comment */ // line comment # hash comment",
        "    }\n}\n",
        "你好",
        "你好，世界！",
        "中国的首都是北京。",
        "机器学习是人工智能的一个分支。",
        "今日はいい天気ですね。",
        "カタカナ",
        "ひらがな",
        "東京は日本の首都です。",
        "안녕하세요",
        "한국어 텍스트입니다.",
        "ＡＢＣ　全角",
        "Mixed English 和中文 and 日本語",
        "😀",
        "😀😃😄",
        "🙂🙃",
        "👍",
        "👍🏻",
        "👍🏽",
        "👍🏿",
        "👋🏼 hello",
        "👨‍👩‍👧‍👦",
        "👩🏿‍💻",
        "👨‍❤️‍👨",
        "🏳️‍🌈",
        "❤️",
        "🇫🇷",
        "🇯🇵🇺🇸",
        "1️⃣",
        "text😀text",
        "🤖 robots are here",
        "🚀🚀🚀",
        "🐦 petrel 🌊",
        "café",
        "naïve",
        "résumé",
        "Zürich",
        "São Paulo",
        "Ångström",
        "crème brûlée",
        "e\u0301",
        "cafe\u0301",
        "a\u0308",
        "n\u0303",
        "A\u030a vs \u00c5",
        "\ufb01 ligature",
        "Ⅻ",
        "a\u200bb",
        "\ufeffBOM",
        "a\u00a0b",
        "Ελληνικά",
        "Русский текст",
        "עברית",
        "العربية",
        "हिन्दी",
        "ไทย",
        "Ω≈ç√∫",
        "∑∏∆",
        "½ ¼ ¾",
        "°C",
        "€100",
        "£ ¥ ₹",
        "<s>",
        "</s>",
        "<unk>",
        "<s>hello</s>",
        "Hello <s> world",
        "<s><s>",
        "< s >",
        "<s >",
        "text</s>",
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        "<|im_start|>user\nhi<|im_end|>",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is machine learning?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start",
        "im_start|>",
        "<|im_start|><|im_end|>",
        " <|im_end|> ",
        "<tool_call>",
        "text<tool_call>more",
        "<|endoftext|>The end",
        "[INST] hi [/INST]",
        "<<SYS>>\nsys\n<</SYS>>",
        "\u2581",
        "\u2581\u2581hello",
        "<0x41>",
        "Ġhello",
        "Ċ",
    ]
    contractions = ["it's", "don't", "you're", "we've", "I'm", "they'll", "she'd"]
    for c in contractions:
        s += [c, c.upper(), c.capitalize()]
    for c in ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D"]:
        s += [c, "x" + c + " y"]
    s += [
        "It's a dog's life, isn't it?",
        "I'd've done it if I'd known.",
        "don’t (curly apostrophe)",
        "rock 'n' roll",
        "'quoted'",
        "Y'all'd've",
    ]
    for n in ["1", "12", "123", "1234", "12345"]:
        s += [" " + n, "x" + n + "y"]
    for k in range(1, 9):
        s.append("a" + " " * k + "b")
    for k in [1, 2, 3, 4, 8]:
        s.append("\n" * k + "x")
    s += ["word " * 10, ("The petrel flies over the sea. " * 6).strip()]
    seen, out = set(), []
    for x in s:
        if x not in seen:
            seen.add(x)
            out.append(x)
    assert len(out) >= 220, len(out)
    return out


# --------------------------------------------------------------------------------------
# Chat templates and conversations.
# --------------------------------------------------------------------------------------

LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CONVERSATIONS = [
    {
        "name": "system_user",
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "What is 2+2?"},
        ],
    },
    {"name": "user_only", "messages": [{"role": "user", "content": "Hello! Who are you?"}]},
    {
        "name": "user_assistant_user",
        "messages": [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another one, please."},
        ],
    },
]


def render_jinja(template: str, messages, add_generation_prompt: bool, **kw) -> str:
    """Renders a chat template the way transformers does (sandboxed, trim_blocks, lstrip_blocks)."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt, **kw)


# --------------------------------------------------------------------------------------
# 1. SentencePiece BPE tokenizer with byte fallback (Llama-2 style) -> tokenizer.json
# --------------------------------------------------------------------------------------

SP_VOCAB_SIZE = 512


def train_sentencepiece() -> bytes:
    import sentencepiece as spm

    buf = io.BytesIO()
    # ASCII lines weigh 4x (others 2x) so that the rarest characters (most CJK, emoji) fall under the 2% that
    # character_coverage=0.98 leaves out and are left to byte fallback; the frequent ones stay pieces.
    lines = []
    for l in corpus_lines():
        if l.strip():
            lines += [l] * (4 if l.isascii() else 2)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        model_type="bpe",
        vocab_size=SP_VOCAB_SIZE,
        byte_fallback=True,
        split_digits=True,
        character_coverage=0.98,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_by_unicode_script=True,
        split_by_whitespace=True,
        max_sentencepiece_length=16,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        unk_piece="<unk>",
        bos_piece="<s>",
        eos_piece="</s>",
        num_threads=1,
        minloglevel=2,
    )
    return buf.getvalue()


def sp_to_hf_tokenizer(sp):
    """Builds the tokenizer.json that transformers' legacy Llama conversion (LlamaConverter with
    legacy=True, as in Llama 2's published tokenizer.json) gives: BPE with byte fallback, merges
    ranked by piece score, normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer,
    decoder Replace/ByteFallback/Fuse/Strip, BOS added by the post-processor."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE

    n = sp.get_piece_size()
    vocab = {sp.id_to_piece(i): i for i in range(n)}
    normal = {sp.id_to_piece(i): i for i in range(n) if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or sp.is_unused(i))}
    # transformers' SentencePieceExtractor.extract(vocab_scores): every split of a piece into two
    # pieces is a merge, ranked by the score of the merged piece (highest first).
    merges = []
    for piece, pid in normal.items():
        local = []
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in normal and right in normal:
                local.append((left, right, sp.get_score(pid)))
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2], reverse=True)
    merges = [(a, b) for a, b, _ in merges]

    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True, dropout=None))
    tok.add_special_tokens(
        [AddedToken(sp.id_to_piece(i), special=True, normalized=False) for i in range(3)]
    )
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)]
    )
    return tok


def added_tokens_decoder(tok) -> dict:
    out = {}
    for tid, at in sorted(tok.get_added_tokens_decoder().items()):
        out[str(tid)] = {
            "content": at.content,
            "lstrip": at.lstrip,
            "normalized": at.normalized,
            "rstrip": at.rstrip,
            "single_word": at.single_word,
            "special": at.special,
        }
    return out


def make_sp_tokenizer():
    import sentencepiece as spm

    log("training SentencePiece BPE tokenizer")
    model_bytes = train_sentencepiece()
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    assert sp.get_piece_size() == SP_VOCAB_SIZE, sp.get_piece_size()
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert sp.id_to_piece(3) == "<0x00>" and sp.id_to_piece(258) == "<0xFF>"
    tok = sp_to_hf_tokenizer(sp)
    d = FIX / "tiny-llama"
    d.mkdir(parents=True, exist_ok=True)
    (d / "tokenizer.model").write_bytes(model_bytes)
    tok.save(str(d / "tokenizer.json"))
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": added_tokens_decoder(tok),
        "bos_token": "<s>",
        "chat_template": LLAMA2_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": True,
        "model_max_length": 256,
        "pad_token": None,
        "padding_side": "left",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    write_json(d / "tokenizer_config.json", config, indent=2)
    log(f"wrote Tests/Fixtures/tiny-llama/tokenizer.json ({(d / 'tokenizer.json').stat().st_size:,} bytes)")
    return sp, model_bytes


# --------------------------------------------------------------------------------------
# 6. Byte-level BPE tokenizer trained with `tokenizers`
# --------------------------------------------------------------------------------------

BYTELEVEL_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BYTELEVEL_ADDED = "<tool_call>"


def make_bytelevel_tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors, trainers
    from tokenizers.models import BPE

    log("training byte-level BPE tokenizer")
    tok = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        min_frequency=2,
        show_progress=False,
        special_tokens=BYTELEVEL_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus_lines() * 2, trainer=trainer, length=None)
    tok.add_tokens([AddedToken(BYTELEVEL_ADDED, special=False, normalized=False)])
    d = FIX / "bytelevel"
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    log(f"wrote Tests/Fixtures/bytelevel/tokenizer.json ({(d / 'tokenizer.json').stat().st_size:,} bytes), vocab {tok.get_vocab_size()}")
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added_tokens_decoder(tok),
        "bos_token": None,
        "chat_template": CHATML_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "model_max_length": 256,
        "pad_token": "<|endoftext|>",
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }
    write_json(d / "tokenizer_config.json", config, indent=2)
    return tok


# --------------------------------------------------------------------------------------
# SmolLM2's tokenizer, built from the vocabulary and merges in its GGUF.
# --------------------------------------------------------------------------------------


def smollm2_reader():
    from gguf import GGUFReader

    if not SMOLLM2_PATH.exists():
        sys.exit(f"error: {SMOLLM2_PATH} is missing; run scripts/fetch-model.sh first")
    return GGUFReader(str(SMOLLM2_PATH))


def make_smollm2_tokenizer(reader):
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    f = reader.fields
    assert f["tokenizer.ggml.model"].contents() == "gpt2"
    assert f["tokenizer.ggml.pre"].contents() == "smollm"
    tokens = f["tokenizer.ggml.tokens"].contents()
    types = f["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in f["tokenizer.ggml.merges"].contents()]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens)
    tok = Tokenizer(
        BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None, continuing_subword_prefix="",
            end_of_word_suffix="", fuse_unk=False, byte_fallback=False)
    )
    tok.normalizer = None
    # llama.cpp's "smollm" pre-tokenizer: \p{N} split, then the GPT-2 regex.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)]
    )
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    control = [i for i, t in enumerate(types) if t == 3]
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i in control])
    TMP.mkdir(parents=True, exist_ok=True)
    tok.save(str(TMP / "smollm2-tokenizer.json"))
    log(f"SmolLM2 tokenizer: {len(tokens)} tokens, {len(merges)} merges, {len(control)} control tokens -> {TMP / 'smollm2-tokenizer.json'} (not committed)")
    return tok


LLAMACPP_RAW = ("The capital of France is", [504, 3575, 282, 4649, 314])
LLAMACPP_CHAT = (
    "<|im_start|>user\nWhat is machine learning?<|im_end|>\n<|im_start|>assistant\n",
    [1, 4093, 198, 1780, 314, 3746, 1380, 47, 2, 198, 1, 520, 9531, 198],
)


# --------------------------------------------------------------------------------------
# 7. Tokenizer goldens
# --------------------------------------------------------------------------------------


def make_tokenizer_goldens(sp, sp_tok, bl_tok, smol_tok, smol_hf):
    strings = test_strings()
    log(f"tokenizer goldens for {len(strings)} strings")

    # The SentencePiece-built tokenizer.json must agree with SentencePiece itself wherever the text
    # holds no special-token string (SentencePiece treats "<s>" in text as plain characters).
    specials = ["<s>", "</s>", "<unk>"]
    sp_mismatch = []
    for s in strings:
        if any(t in s for t in specials):
            continue
        if sp.encode(s) != sp_tok.encode(s, add_special_tokens=False).ids:
            sp_mismatch.append(s)
    if sp_mismatch:
        note(f"tiny-llama tokenizer.json differs from SentencePiece on {len(sp_mismatch)} strings: {sp_mismatch!r}")
    else:
        log("tiny-llama tokenizer.json agrees with SentencePiece on every string without special tokens")

    # The GGUF-built SmolLM2 tokenizer against transformers' own GGUF conversion.
    diffs = []
    for s in strings:
        a = smol_tok.encode(s, add_special_tokens=False).ids
        b = smol_hf(s, add_special_tokens=False)["input_ids"]
        if a != b:
            diffs.append({"text": s, "petrel_reference": a, "transformers_gguf": b})
        da = smol_tok.decode(a, skip_special_tokens=False)
        db = smol_hf.decode(a, skip_special_tokens=False)
        if da != db:
            diffs.append({"text": s, "decode_reference": da, "decode_transformers_gguf": db})
    for text, ids in (LLAMACPP_RAW, LLAMACPP_CHAT):
        got = smol_tok.encode(text, add_special_tokens=False).ids
        assert got == ids, (text, got, ids)
        got_hf = smol_hf(text, add_special_tokens=False)["input_ids"]
        if got_hf != ids:
            note(f"transformers' GGUF tokenizer gives {got_hf} for {text!r}; llama.cpp gives {ids}")
    log("SmolLM2 tokenizer reproduces llama.cpp's ids for both reference prompts")

    entries = []
    for s in strings:
        e = {"text": s}
        enc = sp_tok.encode(s, add_special_tokens=False).ids
        e["sp"] = {
            "ids": enc,
            "ids_with_bos": sp_tok.encode(s, add_special_tokens=True).ids,
            "decoded": sp_tok.decode(enc, skip_special_tokens=False),
        }
        enc = bl_tok.encode(s, add_special_tokens=False).ids
        e["bytelevel"] = {"ids": enc, "decoded": bl_tok.decode(enc, skip_special_tokens=False)}
        enc = smol_tok.encode(s, add_special_tokens=False).ids
        e["smollm2"] = {"ids": enc, "decoded": smol_tok.decode(enc, skip_special_tokens=False)}
        entries.append(e)
    out = {
        "about": "ids = encode(text, add_special_tokens=False); decoded = decode(ids, skip_special_tokens=False); "
                 "sp.ids_with_bos = encode(text, add_special_tokens=True). See README.md.",
        "tokenizers": {
            "sp": "tiny-llama/tokenizer.json (SentencePiece BPE + byte fallback, Llama-2 legacy layout)",
            "bytelevel": "bytelevel/tokenizer.json (byte-level BPE, GPT-2 style)",
            "smollm2": "SmolLM2-135M-Instruct tokenizer rebuilt from its GGUF (gpt2 BPE, smollm pre-tokenizer)",
        },
        "strings": entries,
    }
    write_json(FIX / "tokenizer-goldens.json", out)
    return strings, diffs, sp_mismatch


def make_chat_goldens(sp_dir: Path, bl_dir: Path, smol_template: str, smol_hf, sp_tok, bl_tok, smol_tok):
    import transformers
    from transformers import AutoTokenizer

    llama_hf = AutoTokenizer.from_pretrained(str(sp_dir))
    bl_hf = AutoTokenizer.from_pretrained(str(bl_dir))
    # transformers loads bytelevel/tokenizer.json unchanged. For tokenizer_class LlamaTokenizer,
    # transformers 5 keeps the vocabulary and merges but replaces the normalizer / pre-tokenizer with
    # its own Metaspace(prepend_scheme="always"), which differs from SentencePiece (and from the
    # tokenizer.json) where a piece of text starts with a space: count those.
    for s in test_strings():
        a = bl_hf(s, add_special_tokens=False)["input_ids"]
        b = bl_tok.encode(s, add_special_tokens=False).ids
        assert a == b, ("bytelevel", s, a, b)
    llama_diff = [s for s in test_strings()
                  if llama_hf(s, add_special_tokens=False)["input_ids"] != sp_tok.encode(s, add_special_tokens=False).ids]
    if llama_diff:
        ex = ", ".join(json.dumps(s, ensure_ascii=False) for s in llama_diff[:8])
        note(f"transformers {transformers.__version__} `AutoTokenizer.from_pretrained('tiny-llama')` (LlamaTokenizer) "
             f"rebuilds the pipeline as Metaspace(prepend_scheme='always') instead of the tokenizer.json's legacy "
             f"Prepend+Replace normalizer, and then encodes {len(llama_diff)} of the golden strings differently "
             f"from `tokenizers` and SentencePiece (it does not add the dummy '▁' when the text, or the text after "
             f"a special token, already starts with a space), e.g. {ex}. The goldens follow tokenizer.json "
             f"(= SentencePiece).")
    convs = []
    for conv in CONVERSATIONS:
        msgs = conv["messages"]
        llama_text = llama_hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        assert llama_text == render_jinja(LLAMA2_CHAT_TEMPLATE, msgs, True, bos_token="<s>", eos_token="</s>")
        bl_text = bl_hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        assert bl_text == render_jinja(CHATML_TEMPLATE, msgs, True, bos_token=None, eos_token="<|im_end|>")
        smol_text = render_jinja(smol_template, msgs, True, bos_token="<|im_start|>", eos_token="<|im_end|>")
        try:
            hf_text = smol_hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            if hf_text != smol_text:
                note(f"transformers' GGUF tokenizer renders SmolLM2's template differently for {conv['name']}")
        except Exception as e:  # noqa: BLE001
            note(f"transformers' GGUF tokenizer could not apply SmolLM2's chat template: {e}")
        convs.append({
            "name": conv["name"],
            "messages": msgs,
            "tiny_llama": {"text": llama_text, "ids": sp_tok.encode(llama_text, add_special_tokens=False).ids},
            "bytelevel": {"text": bl_text, "ids": bl_tok.encode(bl_text, add_special_tokens=False).ids},
            "smollm2": {"text": smol_text, "ids": smol_tok.encode(smol_text, add_special_tokens=False).ids},
        })
    out = {
        "about": "apply_chat_template(messages, tokenize=False, add_generation_prompt=True); ids = encode(text, "
                 "add_special_tokens=False) with the same tokenizer. tiny_llama: Llama-2 template (bos '<s>', eos "
                 "'</s>'); bytelevel: ChatML; smollm2: tokenizer.chat_template from the GGUF rendered with jinja2 "
                 "(sandboxed, trim_blocks, lstrip_blocks, as transformers does; bos '<|im_start|>', eos '<|im_end|>').",
        "templates": {"tiny_llama": LLAMA2_CHAT_TEMPLATE, "bytelevel": CHATML_TEMPLATE, "smollm2": smol_template},
        "conversations": convs,
    }
    write_json(FIX / "chat-goldens.json", out)


# --------------------------------------------------------------------------------------
# 2. Tiny random Llama (HF safetensors, F32 + sharded BF16)
# --------------------------------------------------------------------------------------

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-5, max_position_embeddings=256,
            bos_token_id=1, eos_token_id=2)


def init_weights(model, seed: int) -> None:
    """Larger-than-default init so that logits are far from flat: every weight and bias ~ N(0, 0.1²),
    every RMSNorm weight 1 + 0.1·N(0, 1). Parameters are visited in sorted-name order."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if "norm" in name:
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)


def make_tiny_llama(vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    log("building tiny random Llama")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, tie_word_embeddings=False, **TINY)
    model = LlamaForCausalLM(cfg).to(torch.float32)
    init_weights(model, 0)
    model.eval()
    d = FIX / "tiny-llama"
    model.save_pretrained(str(d), safe_serialization=True)
    # sharded bfloat16 copy
    ds = FIX / "tiny-llama-sharded"
    if ds.exists():
        shutil.rmtree(ds)
    bf = copy.deepcopy(model).to(torch.bfloat16)
    bf.save_pretrained(str(ds), safe_serialization=True, max_shard_size="100KB")
    for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"):
        shutil.copy(d / name, ds / name)
    shards = sorted(p.name for p in ds.glob("model-*.safetensors"))
    assert len(shards) >= 2 and (ds / "model.safetensors.index.json").exists(), shards
    log(f"tiny-llama: {sum(p.numel() for p in model.parameters()):,} params; sharded copy has {len(shards)} shards")
    return model


def make_tiny_qwen2(vocab_size: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    log("building tiny random Qwen2")
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=vocab_size, tie_word_embeddings=True, **TINY)
    model = Qwen2ForCausalLM(cfg).to(torch.float32)
    init_weights(model, 2)
    model.eval()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    d = FIX / "tiny-qwen2"
    model.save_pretrained(str(d), safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(FIX / "tiny-llama" / name, d / name)
    return model


# --------------------------------------------------------------------------------------
# 3. GGUF of the tiny Llama (F32 and Q8_0), as convert_hf_to_gguf.py writes it
# --------------------------------------------------------------------------------------


def permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.permute: HF rotate-half order -> GGUF interleaved pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def unpermute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def gguf_tensors(model) -> list[tuple[str, str, np.ndarray, bool]]:
    """(gguf name, hf name, array in GGUF layout, permuted?) in llama.cpp's order."""
    cfg = model.config
    sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    out = [("token_embd.weight", "model.embed_tokens.weight", sd["model.embed_tokens.weight"], False)]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        out += [
            (f"blk.{i}.attn_norm.weight", p + "input_layernorm.weight", sd[p + "input_layernorm.weight"], False),
            (f"blk.{i}.attn_q.weight", p + "self_attn.q_proj.weight", permute(sd[p + "self_attn.q_proj.weight"], nh, nh), True),
            (f"blk.{i}.attn_k.weight", p + "self_attn.k_proj.weight", permute(sd[p + "self_attn.k_proj.weight"], nh, nkv), True),
            (f"blk.{i}.attn_v.weight", p + "self_attn.v_proj.weight", sd[p + "self_attn.v_proj.weight"], False),
            (f"blk.{i}.attn_output.weight", p + "self_attn.o_proj.weight", sd[p + "self_attn.o_proj.weight"], False),
            (f"blk.{i}.ffn_norm.weight", p + "post_attention_layernorm.weight", sd[p + "post_attention_layernorm.weight"], False),
            (f"blk.{i}.ffn_gate.weight", p + "mlp.gate_proj.weight", sd[p + "mlp.gate_proj.weight"], False),
            (f"blk.{i}.ffn_up.weight", p + "mlp.up_proj.weight", sd[p + "mlp.up_proj.weight"], False),
            (f"blk.{i}.ffn_down.weight", p + "mlp.down_proj.weight", sd[p + "mlp.down_proj.weight"], False),
        ]
    out += [
        ("output_norm.weight", "model.norm.weight", sd["model.norm.weight"], False),
        ("output.weight", "lm_head.weight", sd["lm_head.weight"], False),
    ]
    return out


def write_tiny_gguf(model, sp, path: Path, q8: bool) -> None:
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    cfg = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_type("model")
    w.add_name("Petrel Tiny Llama (random weights)")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if q8 else gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(cfg.vocab_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    # tokenizer, as convert_hf_to_gguf.py _set_vocab_sentencepiece + SpecialVocab write it
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        t = gguf.TokenType.NORMAL
        if sp.is_unknown(i):
            t = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            t = gguf.TokenType.CONTROL
        elif sp.is_unused(i):
            t = gguf.TokenType.UNUSED
        elif sp.is_byte(i):
            t = gguf.TokenType.BYTE
        types.append(int(t))
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_add_space_prefix(True)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(LLAMA2_CHAT_TEMPLATE)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, _, arr, _ in gguf_tensors(model):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if q8 and arr.ndim == 2:
            w.add_tensor(name, quants.quantize(arr, Q.Q8_0), raw_dtype=Q.Q8_0)
        else:
            w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    log(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes)")


def q8_0_model(model):
    """A copy of `model` whose every 2-D weight is its Q8_0 round trip, taken in GGUF layout
    (permuted q/k) and permuted back — exactly the values tiny-llama-q8_0.gguf holds."""
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    cfg = model.config
    m = copy.deepcopy(model)
    sd = m.state_dict()
    with torch.no_grad():
        for gname, hname, arr, permuted in gguf_tensors(model):
            if arr.ndim != 2:
                continue
            deq = quants.dequantize(quants.quantize(np.ascontiguousarray(arr, dtype=np.float32), Q.Q8_0), Q.Q8_0)
            deq = deq.reshape(arr.shape).astype(np.float32)
            if permuted:
                nkv = cfg.num_attention_heads if gname.endswith("attn_q.weight") else cfg.num_key_value_heads
                deq = unpermute(deq, cfg.num_attention_heads, nkv)
            sd[hname].copy_(torch.from_numpy(deq))
    m.eval()
    return m


@torch.no_grad()
def check_gguf_with_transformers(golden_path: Path) -> None:
    """transformers' own GGUF loader (which un-permutes q/k) must give the golden logits back."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    golden = json.loads(golden_path.read_text())
    for name, key in (("tiny-llama-f32.gguf", "prompts"), ("tiny-llama-q8_0.gguf", "logits_q8_0")):
        m = AutoModelForCausalLM.from_pretrained(str(FIX), gguf_file=name, dtype=torch.float32).eval()
        worst = 0.0
        for p in golden[key]:
            got = m(input_ids=torch.tensor([p["ids"]])).logits[0].numpy()
            worst = max(worst, float(np.abs(got - np.asarray(p["logits"], dtype=np.float32)).max()))
        assert worst < 1e-4, (name, worst)
        log(f"transformers loads {name}: max |logit - golden {key}| = {worst:.2e}")
    tok = AutoTokenizer.from_pretrained(str(FIX), gguf_file="tiny-llama-f32.gguf")
    sp_tok = __import__("tokenizers").Tokenizer.from_file(str(FIX / "tiny-llama" / "tokenizer.json"))
    diff = [s for s in test_strings()
            if tok(s, add_special_tokens=False)["input_ids"] != sp_tok.encode(s, add_special_tokens=False).ids]
    if diff:
        ex = ", ".join(json.dumps(s, ensure_ascii=False) for s in diff[:6])
        note(f"transformers' GGUF tokenizer conversion of tiny-llama-f32.gguf (tokenizer.ggml.model=llama) encodes "
             f"{len(diff)} of the golden strings differently from SentencePiece / tiny-llama/tokenizer.json, "
             f"e.g. {ex} (the same Metaspace leading-space behaviour). The GGUF vocabulary, scores and types are "
             f"SentencePiece's, so a llama.cpp-style SPM tokenizer over them should give the `sp` goldens.")


def check_gguf_roundtrip(path: Path, model) -> None:
    from gguf import GGUFReader
    from gguf import quants

    r = GGUFReader(str(path))
    byname = {t.name: t for t in r.tensors}
    for gname, _, arr, permuted in gguf_tensors(model):
        t = byname[gname]
        vals = quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(arr.shape)
        tol = 0 if t.tensor_type.name == "F32" else 0.02
        assert np.max(np.abs(vals - arr)) <= tol + 1e-7, gname
    nh, nkv = model.config.num_attention_heads, model.config.num_key_value_heads
    q = model.model.layers[0].self_attn.k_proj.weight.detach().numpy()
    assert np.array_equal(unpermute(permute(q, nh, nkv), nh, nkv), q)


# --------------------------------------------------------------------------------------
# 4/5. Logits and generation goldens from transformers
# --------------------------------------------------------------------------------------


def prompts_for(sp_tok) -> list[list[int]]:
    def enc(text, limit=20):
        ids = sp_tok.encode(text, add_special_tokens=True).ids
        assert ids[0] == 1
        return ids[:limit]

    prompts = [
        [1],
        enc("The capital of France is"),
        enc("def add(a, b):\n    return a + b"),
        enc("Hello, 世界! 🐦"),
        enc("A petrel can travel thousands of kilometres in a single season and still find its nest again."),
    ]
    assert max(len(p) for p in prompts) == 20 and min(len(p) for p in prompts) == 1
    return prompts


@torch.no_grad()
def logits_for(model, prompts) -> list[dict]:
    out = []
    for ids in prompts:
        x = torch.tensor([ids], dtype=torch.long)
        logits = model(input_ids=x).logits[0].to(torch.float32).numpy()
        out.append({"ids": ids, "logits": [f32list(row) for row in logits]})
    return out


@torch.no_grad()
def generate_for(model, ids, **kw) -> list[int]:
    x = torch.tensor([ids], dtype=torch.long)
    y = model.generate(input_ids=x, attention_mask=torch.ones_like(x), pad_token_id=model.config.eos_token_id, **kw)
    return y[0, len(ids):].tolist()


def make_logit_goldens(model, prompts, path: Path, with_q8: bool, about: str) -> None:
    log(f"logits for {path.name}")
    out = {"about": about, "prompts": logits_for(model, prompts)}
    if with_q8:
        out["logits_q8_0"] = logits_for(q8_0_model(model), prompts)
    gen_prompts = [prompts[1], prompts[2]]
    out["greedy"] = [{"ids": p, "new": generate_for(model, p, do_sample=False, max_new_tokens=12)} for p in gen_prompts]
    out["beam4"] = [
        {"ids": p, "new": generate_for(model, p, do_sample=False, num_beams=4, max_new_tokens=10,
                                       early_stopping=True, length_penalty=1.0, num_return_sequences=1)}
        for p in gen_prompts
    ]
    for g in out["greedy"] + out["beam4"]:
        log(f"  {path.stem}: prompt {g['ids']} -> {g['new']}")
    write_json(path, out)


def perplexity_reference(model, tokens: list[int], context: int, bos: int | None) -> dict:
    """llama-perplexity's method: non-overlapping chunks of `context` (remainder dropped), each from
    an empty cache with its first token replaced by `bos` (if any); rows context//2 .. context-2
    predict the next token; log-softmax in float64 of the fp32 logits; PPL = exp(mean NLL) and its
    error sqrt((E[x^2] - E[x]^2) / (n - 1)) * PPL."""
    first = context // 2
    nll = nll2 = 0.0
    count = 0
    chunks = []
    for c in range(len(tokens) // context):
        ids = list(tokens[c * context:(c + 1) * context])
        if bos is not None:
            ids[0] = bos
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids], dtype=torch.long)).logits[0].to(torch.float32)
        logp = torch.log_softmax(logits.to(torch.float64), dim=-1)
        values = [-float(logp[r, ids[r + 1]]) for r in range(first, context - 1)]
        nll += sum(values)
        nll2 += sum(v * v for v in values)
        count += len(values)
        chunks.append({"nll_sum": sum(values), "count": len(values), "running_ppl": float(np.exp(nll / count))})
    mean = nll / count
    err = float(np.sqrt((nll2 / count - mean * mean) / (count - 1)) * np.exp(mean))
    return {"context": context, "bos": bos, "chunks": chunks, "count": count, "mean_nll": mean,
            "ppl": float(np.exp(mean)), "ppl_error": err}


def make_perplexity_golden(model, sp_tok) -> None:
    """tiny-llama-perplexity.json: llama-perplexity's figures for the tiny Llama over the corpus's
    English prose (sp tokenizer, BOS first), 212 tokens: 3 chunks of 64 with BOS replacing each
    chunk's first token, and 6 chunks of 33 (odd) without."""
    log("perplexity reference for tiny-llama")
    text = "\n".join(corpus_lines()[:18])
    tokens = sp_tok.encode(text, add_special_tokens=True).ids[:212]
    assert len(tokens) == 212 and tokens[0] == 1
    cases = [perplexity_reference(model, tokens, 64, 1), perplexity_reference(model, tokens, 33, None)]
    for c in cases:
        log(f"  context {c['context']}: {len(c['chunks'])} chunks, {c['count']} tokens, PPL {c['ppl']:.4f} ± {c['ppl_error']:.4f}")
    write_json(FIX / "tiny-llama-perplexity.json", {
        "about": "tiny-llama (F32) perplexity over `tokens` as llama-perplexity computes it, from transformers' fp32 "
                 "logits (scripts/make_fixtures.py perplexity_reference); per chunk the NLL sum of its scored tokens "
                 "and the running perplexity.",
        "tokens": tokens, "cases": cases})


# --------------------------------------------------------------------------------------
# 5. Config files for parsing tests
# --------------------------------------------------------------------------------------


def make_configs(vocab_size: int) -> None:
    from transformers import LlamaConfig, MistralConfig

    d = FIX / "configs"
    d.mkdir(parents=True, exist_ok=True)
    mistral = MistralConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-5,
                            max_position_embeddings=256, sliding_window=32, tie_word_embeddings=False,
                            bos_token_id=1, eos_token_id=2)
    mistral.architectures = ["MistralForCausalLM"]
    mistral.to_json_file(str(d / "mistral-config.json"))
    # Published hyperparameters of meta-llama/Llama-2-7b-hf and meta-llama/Meta-Llama-3-8B.
    l2 = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                     rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1,
                     eos_token_id=2, hidden_act="silu", initializer_range=0.02, dtype="float16")
    l2.architectures = ["LlamaForCausalLM"]
    l2.to_json_file(str(d / "llama-2-7b-config.json"))
    l3 = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                     rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False, bos_token_id=128000,
                     eos_token_id=128001, hidden_act="silu", initializer_range=0.02, dtype="bfloat16")
    l3.architectures = ["LlamaForCausalLM"]
    l3.to_json_file(str(d / "llama-3-8b-config.json"))
    # The same two configs in the layout the Hub's config.json files have (transformers 4.x:
    # top-level rope_theta / torch_dtype, rope_scaling null), written here from the same numbers.
    common = {"architectures": ["LlamaForCausalLM"], "hidden_act": "silu", "initializer_range": 0.02,
              "model_type": "llama", "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
              "tie_word_embeddings": False, "use_cache": True}
    l2_hub = dict(common, bos_token_id=1, eos_token_id=2, hidden_size=4096, intermediate_size=11008,
                  max_position_embeddings=4096, num_attention_heads=32, num_hidden_layers=32,
                  num_key_value_heads=32, torch_dtype="float16", transformers_version="4.31.0.dev0",
                  vocab_size=32000)
    l3_hub = dict(common, attention_bias=False, attention_dropout=0.0, bos_token_id=128000, eos_token_id=128001,
                  hidden_size=4096, intermediate_size=14336, max_position_embeddings=8192, num_attention_heads=32,
                  num_hidden_layers=32, num_key_value_heads=8, rope_theta=500000.0, torch_dtype="bfloat16",
                  transformers_version="4.40.0.dev0", vocab_size=128256)
    write_json(d / "llama-2-7b-config.hub-v4.json", dict(sorted(l2_hub.items())), indent=2)
    write_json(d / "llama-3-8b-config.hub-v4.json", dict(sorted(l3_hub.items())), indent=2)
    log("wrote configs/")


# --------------------------------------------------------------------------------------
# 8. SmolLM2 reference outputs (transformers, GGUF dequantized to fp32)
# --------------------------------------------------------------------------------------


@torch.no_grad()
def make_smollm2_reference(smol_tok) -> dict:
    from transformers import AutoModelForCausalLM

    log("loading SmolLM2 from GGUF with transformers (dequantizes to fp32)")
    model = AutoModelForCausalLM.from_pretrained(str(SMOLLM2_PATH.parent), gguf_file=SMOLLM2_NAME, dtype=torch.float32)
    model.eval()
    log("SmolLM2 loaded")
    cases = []
    for name, (text, ids) in (("raw", LLAMACPP_RAW), ("chatml", LLAMACPP_CHAT)):
        assert smol_tok.encode(text, add_special_tokens=False).ids == ids
        x = torch.tensor([ids])
        last = model(input_ids=x).logits[0, -1].to(torch.float32)
        top = torch.topk(last, 5)
        new = generate_for(model, ids, do_sample=False, max_new_tokens=16)
        case = {
            "name": name,
            "prompt": text,
            "prompt_ids": ids,
            "new_ids": new,
            "new_text": smol_tok.decode(new, skip_special_tokens=False),
            "top5_last": [{"id": int(i), "logit": f32(v)} for v, i in zip(top.values.tolist(), top.indices.tolist())],
        }
        log(f"  SmolLM2 {name}: {new} = {case['new_text']!r}")
        cases.append(case)
    out = {
        "about": "SmolLM2-135M-Instruct Q4_1 GGUF loaded by transformers (AutoModelForCausalLM.from_pretrained("
                 "dir, gguf_file=..., dtype=float32): Q4_1/Q8_0 dequantized to fp32, q/k un-permuted), eager, CPU. "
                 "new_ids = generate(do_sample=False, max_new_tokens=16); top5_last = top-5 of the last position's "
                 "logits for the prompt alone. llama.cpp (int8 activations) agrees only on the first tokens.",
        "model_file": SMOLLM2_NAME,
        "model_sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "cases": cases,
    }
    write_json(FIX / "smollm2-reference.json", out)
    return out


# --------------------------------------------------------------------------------------
# 9. GGUF and safetensors type coverage
# --------------------------------------------------------------------------------------


def kquant_blocks(rng, tname: str, rows: int, cols: int) -> np.ndarray:
    """Random K-quant blocks (uint8, rows x bytes) whose fp16 scales are small and positive."""
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    block, size = quants.GGML_QUANT_SIZES[Q[tname]]
    data = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    def f16(values):
        return np.frombuffer(np.asarray(values, dtype=np.float16).tobytes(), dtype=np.uint8).reshape(-1, 2)
    n = rows * cols // block
    flat = data.reshape(n, size)
    if tname in ("Q4_K", "Q5_K"):   # d, dmin at bytes 0..3
        flat[:, 0:2] = f16(rng.uniform(0.001, 0.01, n))
        flat[:, 2:4] = f16(rng.uniform(0.001, 0.01, n))
    else:                            # Q6_K: d at bytes 208..209
        flat[:, 208:210] = f16(rng.uniform(0.0005, 0.002, n))
    return flat.reshape(rows, cols // block * size)


def make_gguf_types() -> None:
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFValueType as V
    from gguf import quants

    log("gguf-types")
    path = FIX / "gguf-types.gguf"
    w = gguf.GGUFWriter(str(path), "petrel-test")
    meta: list[tuple[str, str, object, object]] = []  # key, type, value, array element type

    def kv(key, vtype: V, value, sub=None):
        if vtype == V.ARRAY:
            w.add_key_value(key, value, V.ARRAY, sub_type=sub)
        else:
            w.add_key_value(key, value, vtype)
        meta.append((key, vtype.name, value, sub.name if sub is not None else None))

    kv("test.uint8", V.UINT8, 200)
    kv("test.int8", V.INT8, -100)
    kv("test.uint16", V.UINT16, 60000)
    kv("test.int16", V.INT16, -30000)
    kv("test.uint32", V.UINT32, 4000000000)
    kv("test.int32", V.INT32, -2000000000)
    kv("test.float32", V.FLOAT32, 0.15625)
    kv("test.float32_inexact", V.FLOAT32, f32(0.1))
    kv("test.bool_true", V.BOOL, True)
    kv("test.bool_false", V.BOOL, False)
    kv("test.string", V.STRING, "hello, GGUF")
    kv("test.string_unicode", V.STRING, "naïve café 你好 👍🏽\n\ttab")
    kv("test.string_empty", V.STRING, "")
    kv("test.uint64", V.UINT64, 18000000000000000000)
    kv("test.int64", V.INT64, -9000000000000000000)
    kv("test.float64", V.FLOAT64, 3.141592653589793)
    kv("test.array.int32", V.ARRAY, [1, -2, 3, 2147483647, -2147483648], V.INT32)
    kv("test.array.uint8", V.ARRAY, [0, 1, 255], V.UINT8)
    kv("test.array.int64", V.ARRAY, [-1, 9000000000000000000], V.INT64)
    kv("test.array.float32", V.ARRAY, [0.5, -1.25, 1e-5], V.FLOAT32)
    kv("test.array.float64", V.ARRAY, [0.1, 2.5], V.FLOAT64)
    kv("test.array.bool", V.ARRAY, [True, False, True], V.BOOL)
    kv("test.array.string", V.ARRAY, ["a", "", "<|im_start|>", "Ġhello", "日本"], V.STRING)
    kv("test.array.nested", V.ARRAY, [[1, 2], [3, 4, 5]], V.ARRAY)

    rng = np.random.default_rng(1234)
    tensors = []
    base = rng.standard_normal((4, 64)).astype(np.float32)
    specs = [
        ("t.f32", "F32", base),
        ("t.f32_1d", "F32", rng.standard_normal((64,)).astype(np.float32)),
        ("t.f32_3d", "F32", rng.standard_normal((2, 3, 32)).astype(np.float32)),
        ("t.f16", "F16", base),
        ("t.bf16", "BF16", base),
        ("t.q8_0", "Q8_0", base),
        ("t.q4_0", "Q4_0", base),
        ("t.q4_1", "Q4_1", base),
        ("t.q5_0", "Q5_0", base),
        ("t.q5_1", "Q5_1", base),
        # K-quants: gguf-py cannot quantize to them, so their blocks are random bytes with
        # small positive fp16 super-block scales (what llama.cpp files hold, in layout).
        ("t.q4_k", "Q4_K", kquant_blocks(rng, "Q4_K", rows=2, cols=512)),
        ("t.q5_k", "Q5_K", kquant_blocks(rng, "Q5_K", rows=2, cols=512)),
        ("t.q6_k", "Q6_K", kquant_blocks(rng, "Q6_K", rows=3, cols=256)),
    ]
    for name, tname, data in specs:
        qt = Q[tname]
        if tname.endswith("_K"):
            w.add_tensor(name, data, raw_dtype=qt)
            block, size = quants.GGML_QUANT_SIZES[qt]
            tensors.append((name, tname, (data.shape[0], data.shape[1] // size * block)))
            continue
        if tname == "F32":
            stored = data
            w.add_tensor(name, stored)
        elif tname == "F16":
            stored = data.astype(np.float16)
            w.add_tensor(name, stored)
        else:
            stored = quants.quantize(data, qt)
            w.add_tensor(name, stored, raw_dtype=qt)
        tensors.append((name, tname, data.shape))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # read back and record what a reader must see
    r = gguf.GGUFReader(str(path))
    fields = {k: f for k, f in r.fields.items()}
    metadata = [{"key": "general.architecture", "type": "STRING", "value": "petrel-test"}]
    for key, tname, value, sub in meta:
        f = fields[key]
        assert f.types[0].name == tname, (key, f.types)
        if key != "test.array.nested":
            got = f.contents()
            if tname == "FLOAT32":
                assert f32(got) == f32(value), (key, got, value)
            elif sub == "FLOAT32":
                assert [f32(v) for v in got] == [f32(v) for v in value], (key, got)
            else:
                assert got == value, (key, got, value)
        if tname == "FLOAT32":
            value = f32(value)
        if sub == "FLOAT32":
            value = [f32(v) for v in value]
        e = {"key": key, "type": tname, "value": value}
        if tname in ("UINT64", "INT64"):
            e["value_text"] = str(value)  # for JSON readers that lose 64-bit precision
        if sub is not None:
            e["element_type"] = sub
        if key == "test.array.nested":
            e["inner_element_type"] = "INT32"
        metadata.append(e)
    assert set(fields) - {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"} == {m["key"] for m in metadata}
    tjson = []
    for t, (name, tname, shape) in zip(r.tensors, tensors):
        assert t.name == name and t.tensor_type.name == tname
        vals = quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(shape)
        tjson.append({
            "name": name,
            "type": tname,
            "shape": list(shape),
            "ne": [int(x) for x in t.shape],
            "data_offset": int(t.data_offset),
            "n_bytes": int(t.n_bytes),
            "values": f32list(vals),
        })
    out = {
        "about": "Expected contents of gguf-types.gguf. metadata in file order (general.architecture first); "
                 "tensor shape is numpy order (outermost first), ne is GGUF order (innermost first); data_offset is "
                 "absolute in the file; values are gguf.quants.dequantize() of the stored data, row-major, float32.",
        "version": 3,
        "alignment": 32,
        "tensor_count": len(tjson),
        "kv_count": len(metadata),
        "metadata": metadata,
        "tensors": tjson,
    }
    write_json(FIX / "gguf-types.json", out)


def make_safetensors_types() -> None:
    log("safetensors-types")
    g = torch.Generator().manual_seed(7)
    ts = {
        "f32": torch.randn(4, 8, generator=g),
        "f16": torch.randn(4, 8, generator=g).to(torch.float16),
        "bf16": torch.randn(4, 8, generator=g).to(torch.bfloat16),
        "f32_1d": torch.randn(5, generator=g),
        "bf16_3d": torch.randn(2, 3, 4, generator=g).to(torch.bfloat16),
    }
    path = FIX / "safetensors-types.safetensors"
    meta = {"format": "pt", "note": "petrel test fixture"}
    # save_file orders __metadata__ keys differently from run to run, so the file is laid out here
    # (8-byte little-endian header size, JSON header padded with spaces to 8 bytes, then the data)
    # and checked against safetensors' own reader.
    st_names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    header, blobs, offset = {"__metadata__": meta}, [], 0
    for k, v in ts.items():
        raw = v.contiguous().view(torch.uint8).numpy().tobytes()
        header[k] = {"dtype": st_names[v.dtype], "shape": list(v.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * (-len(hjson) % 8)
    path.write_bytes(len(hjson).to_bytes(8, "little") + hjson + b"".join(blobs))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata() == meta and set(fh.keys()) == set(ts)
        for k, v in ts.items():
            assert torch.equal(fh.get_tensor(k), v), k
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    out = {
        "about": "Expected contents of safetensors-types.safetensors: dtype, shape (outermost first) and the "
                 "float values, row-major (exact: every value is representable in float32).",
        "metadata": meta,
        "tensors": [
            {"name": k, "dtype": names[v.dtype], "shape": list(v.shape), "values": f32list(v.to(torch.float32).numpy())}
            for k, v in ts.items()
        ],
    }
    write_json(FIX / "safetensors-types.json", out)


# --------------------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------------------


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for p in ("torch", "transformers", "tokenizers", "sentencepiece", "gguf", "safetensors", "numpy", "jinja2", "accelerate"):
        out[p] = md.version(p)
    return out


def write_readme(vocab_size, bl_vocab, n_strings, smol_diffs, smol_ref, sp_mismatch) -> None:
    v = versions()
    # quantized/ is made (and described in its own README section) by make_quantized_fixtures.py
    files = sorted(p for p in FIX.rglob("*")
                   if p.is_file() and p.name != "README.md" and p.relative_to(FIX).parts[0] != "quantized")
    total = sum(p.stat().st_size for p in files)
    desc = {
        "tiny-llama/config.json": "LlamaConfig of the tiny random Llama (written by transformers 5: `rope_parameters`, `dtype`)",
        "tiny-llama/generation_config.json": "generation config written by save_pretrained",
        "tiny-llama/model.safetensors": "tiny random Llama weights, F32, HF names and rotate-half q/k layout",
        "tiny-llama/tokenizer.json": f"SentencePiece BPE with byte fallback, Llama-2 legacy layout, vocab {vocab_size}",
        "tiny-llama/tokenizer_config.json": "Llama-2 style tokenizer config with the Llama-2 chat template",
        "tiny-llama/tokenizer.model": "the SentencePiece model the tokenizer.json was made from",
        "tiny-llama-sharded/config.json": "same model, config with dtype bfloat16",
        "tiny-llama-sharded/generation_config.json": "generation config written by save_pretrained",
        "tiny-llama-sharded/model.safetensors.index.json": "shard index (weight_map) of the bf16 copy",
        "tiny-llama-sharded/tokenizer.json": "copy of tiny-llama/tokenizer.json",
        "tiny-llama-sharded/tokenizer_config.json": "copy of tiny-llama/tokenizer_config.json",
        "tiny-llama-sharded/tokenizer.model": "copy of tiny-llama/tokenizer.model",
        "tiny-llama-f32.gguf": "the tiny Llama as GGUF, every tensor F32, q/k permuted as convert_hf_to_gguf does, SPM vocab",
        "tiny-llama-q8_0.gguf": "the same with every 2-D weight Q8_0 (norms F32)",
        "tiny-llama-perplexity.json": "llama-perplexity's figures (NLL sums, running and final PPL, its error) for the tiny Llama over 212 tokens, contexts 64 and 33, from transformers fp32 logits",
        "tiny-llama-logits.json": "transformers fp32 logits (all positions) for 5 prompts, the same for the Q8_0-dequantized weights, greedy and 4-beam continuations",
        "tiny-qwen2/config.json": "Qwen2Config of the tiny random Qwen2 (q/k/v bias, tied embeddings)",
        "tiny-qwen2/generation_config.json": "generation config written by save_pretrained",
        "tiny-qwen2/model.safetensors": "tiny random Qwen2 weights, F32 (no lm_head.weight: tied)",
        "tiny-qwen2/tokenizer.json": "copy of tiny-llama/tokenizer.json",
        "tiny-qwen2/tokenizer_config.json": "copy of tiny-llama/tokenizer_config.json",
        "tiny-qwen2-logits.json": "transformers fp32 logits for the same 5 prompts, greedy and 4-beam continuations",
        "rope-scaling/": "made by scripts/make_rope_fixtures.py: <kind>/config.json (tiny-llama's config with linear, dynamic, yarn, llama3 or longrope scaling; tiny-llama's weights), logits.json (transformers' last-row logits per prompt and chunking), micro-llama3.gguf (1-layer random Llama with rope_freqs.weight, its llama3 logits in logits.json)",
        "configs/mistral-config.json": "tiny MistralConfig (sliding_window 32), transformers 5 layout",
        "configs/llama-2-7b-config.json": "Llama-2-7B hyperparameters via LlamaConfig.to_json_file (transformers 5 layout)",
        "configs/llama-3-8b-config.json": "Meta-Llama-3-8B hyperparameters via LlamaConfig.to_json_file (transformers 5 layout)",
        "configs/llama-2-7b-config.hub-v4.json": "the same numbers in the layout of the Hub's config.json (transformers 4: top-level rope_theta, torch_dtype)",
        "configs/llama-3-8b-config.hub-v4.json": "the same numbers in the layout of the Hub's config.json (transformers 4)",
        "bytelevel/tokenizer.json": f"byte-level BPE trained with tokenizers, vocab {bl_vocab} incl. 3 special tokens and 1 added non-special token",
        "bytelevel/tokenizer_config.json": "its config with a ChatML chat template",
        "tokenizer-goldens.json": f"{n_strings} strings: ids / decoded for sp, bytelevel and smollm2 (plus sp ids_with_bos)",
        "chat-goldens.json": "3 conversations rendered with the Llama-2, ChatML and SmolLM2 templates (text and ids)",
        "smollm2-reference.json": "SmolLM2-135M-Instruct (transformers, GGUF dequantized to fp32): greedy ids/text and top-5 logits",
        "gguf-types.gguf": "GGUF v3 with metadata of every value type and small F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K tensors",
        "gguf-types.json": "what gguf-types.gguf must read as: metadata values, tensor shapes, types, offsets, dequantized values",
        "safetensors-types.safetensors": "small F32, F16, BF16 tensors (1-D, 2-D, 3-D)",
        "safetensors-types.json": "their dtypes, shapes and float values",
    }
    lines = []
    for p in files:
        rel = p.relative_to(FIX).as_posix()
        d = desc.get(rel)
        if d is None and rel.startswith("tiny-llama-sharded/model-"):
            d = "bf16 weight shard"
        assert d is not None, f"undescribed fixture {rel}"
        lines.append(f"| `{rel}` | {p.stat().st_size:,} | {d} |")
    ref = {c["name"]: c for c in smol_ref["cases"]}
    raw, chat = ref["raw"], ref["chatml"]
    notes = list(NOTES)
    if smol_diffs:
        ex = smol_diffs[:6]
        notes.append(
            f"transformers' own GGUF tokenizer conversion (AutoTokenizer.from_pretrained(dir, gguf_file=...)) "
            f"disagrees with the reference SmolLM2 tokenizer on {len({d['text'] for d in smol_diffs})} of "
            f"{n_strings} strings; first cases: "
            + "; ".join(json.dumps(d, ensure_ascii=False) for d in ex)
            + ". transformers' GGUF conversion builds a plain ByteLevel pre-tokenizer and leaves out the "
              "`Digits(individual_digits=True)` step of llama.cpp's `smollm` pre-tokenizer (`\\p{N}` first). "
              "No SmolLM2 merge involves an ASCII digit, so this shows only where a non-ASCII `\\p{N}` character "
              "(such as ½ ¼ ¾) follows a space, whose 'Ġ' then merges with the character's first byte. The goldens "
              "follow llama.cpp's pre-tokenizer."
        )
    else:
        notes.append("transformers' own GGUF tokenizer conversion agrees with the reference SmolLM2 tokenizer on every string.")
    text = f"""# Test fixtures

Made by `scripts/make_fixtures.py` (run `python3 scripts/make_fixtures.py` from the repository root;
CPU only, offline, a few minutes). Everything is seeded and re-running rewrites the same files. All
weights here are random and generated by the script; nothing is copied from a real model. The real
SmolLM2-135M-Instruct GGUF (`$PETREL_CACHE/models/{SMOLLM2_NAME}`, from `scripts/fetch-model.sh`) is only
read, to record goldens; its rebuilt tokenizer.json goes to `/tmp/petrel-fixtures/` and is not committed.

Made with: {", ".join(f"{k} {val}" for k, val in v.items())}
(`scripts/setup-reference.sh` installs them; loading a GGUF model in transformers also needs accelerate).

## Files ({total:,} bytes in all)

| file | bytes | what |
|---|---|---|
{chr(10).join(lines)}

## How they were made

- **tiny-llama tokenizer** (`sp`): `sentencepiece` BPE trained on an English + code + CJK + emoji text
  written into the script (`model_type=bpe`, `vocab_size={vocab_size}`, `byte_fallback`, `split_digits`,
  identity normalization, `add_dummy_prefix`, no whitespace stripping, `<unk>`=0 `<s>`=1 `</s>`=2, ids
  3…258 are `<0x00>`…`<0xFF>`). `tokenizer.json` is built with `tokenizers` in the layout transformers'
  legacy `LlamaConverter` gives (that of Llama 2's published tokenizer.json): BPE (`byte_fallback`,
  `fuse_unk`, merges ranked by the merged piece's score), normalizer `Prepend("▁")` + `Replace(" ", "▁")`,
  no pre-tokenizer, decoder `Replace("▁"," ")`, `ByteFallback`, `Fuse`, `Strip(" ", 1, 0)`, post-processor
  adding `<s>`. The legacy layout prepends "▁" to every piece of text between special tokens (so "Hello
  <s> world" encodes " world" as "▁▁world"). It agrees with SentencePiece on every golden string that
  holds no `<s>`/`</s>`/`<unk>` (checked{'' if not sp_mismatch else ' — see caveats'}). transformers 5's
  `LlamaTokenizer` builds a non-legacy Metaspace tokenizer from scratch, which is why the script builds it
  directly. `tokenizer_config.json` is written by hand (LlamaTokenizer, `add_bos_token` true, `legacy`
  true, the Llama-2 chat template); transformers 5 loads it and renders the chat template, but encodes
  leading spaces differently (see the caveats).
- **tiny-llama**: `LlamaForCausalLM(LlamaConfig(vocab_size={vocab_size}, hidden_size=64,
  intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2 (head_dim 16),
  rope_theta=10000, rms_norm_eps=1e-5, max_position_embeddings=256, tie_word_embeddings=False, bos 1,
  eos 2))`, `torch.manual_seed(0)`, then every parameter (sorted by name, generator seed 0) set to
  N(0, 0.1²), RMSNorm weights to 1 + 0.1·N(0,1). float32, `save_pretrained` (safetensors). The sharded
  copy is the same model cast to bfloat16, `save_pretrained(max_shard_size="100KB")`.
- **GGUF**: `gguf.GGUFWriter(arch="llama")` with llama.cpp's tensor names; `attn_q`/`attn_k` rows permuted
  as `convert_hf_to_gguf.py` `LlamaModel.permute` (`reshape(n_head, 2, rows//n_head//2, cols).swapaxes(1,2)`,
  `n_head_kv` for K); metadata `llama.*` (context 256, embedding 64, blocks 2, FFN 128, heads 4, KV heads 2,
  rope base 10000, rms eps 1e-5, rope dims 16, vocab_size), `general.name`, `general.file_type`
  (0 = ALL_F32, 7 = MOSTLY_Q8_0), `general.quantization_version` 2, and the tokenizer as
  `_set_vocab_sentencepiece` writes it: `tokenizer.ggml.model="llama"`, `pre="default"`, tokens, scores
  (SentencePiece scores), token_type (1 normal, 2 unknown, 3 control, 6 byte), bos 1, eos 2, unk 0,
  `add_bos_token` true, `add_eos_token` false, `add_space_prefix` true, `chat_template` (Llama 2).
  The Q8_0 file quantizes every 2-D weight (token_embd and output included) with `gguf.quants.quantize`.
  Checked: transformers' own GGUF loader (`from_pretrained(..., gguf_file=...)`, which un-permutes q/k)
  reads both files back to the `prompts` / `logits_q8_0` goldens within 1e-4.
- **tiny-llama-logits.json**: `prompts` = 5 prompts (lengths 1…20, all starting with BOS 1) with the
  fp32 logits of every position (`model.eval()`, `torch.no_grad()`, eager CPU); `logits_q8_0` = the same
  model with each 2-D weight replaced by its Q8_0 round trip (taken in GGUF layout, q/k permuted back), i.e.
  what `tiny-llama-q8_0.gguf` holds; `greedy` = `generate(do_sample=False, max_new_tokens=12)`;
  `beam4` = `generate(num_beams=4, do_sample=False, max_new_tokens=10, early_stopping=True,
  length_penalty=1.0)`. Generation stops early if EOS (2) comes; `new` excludes the prompt.
- **tiny-llama-perplexity.json**: the first 212 tokens (BOS first) of the corpus's first 18 lines with the
  sp tokenizer, and llama-perplexity's figures for the tiny Llama over them (`perplexity_reference`):
  non-overlapping chunks (remainder dropped), each a fresh forward pass with its first token replaced by
  BOS where `bos` is set, rows context//2 … context-2 scored against the next token, log-softmax in
  float64 of transformers' fp32 logits; per chunk the NLL sum and running PPL, then PPL = exp(mean NLL)
  ± sqrt((E[x²] − E[x]²)/(n − 1))·PPL. Cases: context 64 with BOS 1 (3 chunks), context 33 without (6).
  `python3 scripts/make_fixtures.py --perplexity-only` rewrites this file alone.
- **tiny-qwen2**: `Qwen2ForCausalLM` with the same sizes (q/k/v biases, tied embeddings), generator seed 2,
  same init rule; `tiny-qwen2-logits.json` as above without `logits_q8_0`.
- **configs**: `*-config.json` are `to_json_file` output of transformers {v['transformers']}, which writes
  `rope_parameters: {{rope_theta, rope_type}}` and `dtype` instead of the top-level `rope_theta` and
  `torch_dtype` that the Hub's config.json files (transformers 4.x) have; the `*.hub-v4.json` files give
  the same published numbers in that older layout, so a parser can be tested on both.
- **bytelevel**: `tokenizers` BPE with `ByteLevel(add_prefix_space=False)` pre-tokenizer and decoder,
  `BpeTrainer(vocab_size=800, min_frequency=2, initial_alphabet=ByteLevel.alphabet())`, special tokens
  `<|endoftext|>`=0, `<|im_start|>`=1, `<|im_end|>`=2, then the added non-special token `{BYTELEVEL_ADDED}`
  (vocab {bl_vocab}). ChatML template in `tokenizer_config.json`.
- **smollm2 tokenizer** (goldens only): vocabulary and merges read from the GGUF with `gguf.GGUFReader`,
  built as SmolLM2's tokenizer.json: BPE, pre-tokenizer `Sequence[Digits(individual_digits=True),
  ByteLevel(add_prefix_space=False, use_regex=True)]` (llama.cpp's `smollm` pre-tokenizer: `\\p{{N}}` then the
  GPT-2 regex), ByteLevel decoder, the 17 `token_type == 3` entries as special added tokens. It gives
  llama.cpp's ids for "The capital of France is" ({LLAMACPP_RAW[1]}) and the ChatML prompt ({LLAMACPP_CHAT[1]}).
- **tokenizer-goldens.json**: per string, `ids` = `encode(text, add_special_tokens=False)` and `decoded` =
  `decode(ids, skip_special_tokens=False)` with `tokenizers.Tokenizer`; `sp.ids_with_bos` with
  `add_special_tokens=True`. Special-token strings inside text are matched as special tokens (the
  `tokenizers` default).
- **chat-goldens.json**: `apply_chat_template(tokenize=False, add_generation_prompt=True)` of transformers
  for tiny-llama and bytelevel; SmolLM2's GGUF `tokenizer.chat_template` rendered with jinja2 as
  transformers does (`ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`). The Llama-2
  template ignores `add_generation_prompt`.
- **smollm2-reference.json**: `AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=float32)`,
  greedy 16 new tokens. raw prompt → `{raw['new_ids']}` ({json.dumps(raw['new_text'], ensure_ascii=False)});
  ChatML prompt → `{chat['new_ids']}` ({json.dumps(chat['new_text'], ensure_ascii=False)}). llama.cpp's own
  greedy output quantizes activations to 8 bits, so only its first few tokens match a fp32 run.
- **gguf-types**: written with `GGUFWriter` (alignment 32, `general.architecture="petrel-test"`); tensors
  quantized from seeded normal data with `gguf.quants.quantize`; JSON values from `gguf.quants.dequantize`.
  `test.array.nested` is an array of arrays of INT32 (the GGUF spec allows it; llama.cpp's loader rejects
  nested arrays and `GGUFReader.contents()` flattens it); `test.string_empty` is written with
  `add_key_value` because `add_string` drops empty strings. The writer cannot write empty arrays.
- **safetensors-types**: laid out by the script in safetensors' format (header JSON in insertion order,
  padded with spaces to 8 bytes; `save_file` orders `__metadata__` keys differently from run to run),
  with `__metadata__` {{"format": "pt", "note": ...}}, and checked with `safetensors.safe_open`.

Tolerances: logits are float32 from PyTorch's CPU kernels; compare with a tolerance (e.g. 1e-4 absolute
for tiny-llama/qwen2 at fp32), ids exactly. Dequantized values are exact float32 products; an
implementation that uses FMA or another order may differ in the last bit.

## Caveats found while making them

{chr(10).join("- " + n for n in notes) if notes else "- none"}
"""
    # Keep the section that make_quantized_fixtures.py writes.
    begin = "<!-- quantized fixtures: written by scripts/make_quantized_fixtures.py -->"
    previous = (FIX / "README.md").read_text(encoding="utf-8") if (FIX / "README.md").exists() else ""
    if begin in previous:
        end = "<!-- end of quantized fixtures -->"
        text = text.rstrip("\n") + "\n\n" + begin + previous.split(begin, 1)[1].split(end, 1)[0] + end + "\n"
    (FIX / "README.md").write_text(text, encoding="utf-8")
    log(f"wrote Tests/Fixtures/README.md; fixtures total {total:,} bytes")


# --------------------------------------------------------------------------------------


def main() -> None:
    if sys.argv[1:] == ["gguf-types"]:   # just the GGUF reader's fixture (seconds, no torch work)
        make_gguf_types()
        return
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    FIX.mkdir(parents=True, exist_ok=True)

    sp, _ = make_sp_tokenizer()
    from tokenizers import Tokenizer

    sp_tok = Tokenizer.from_file(str(FIX / "tiny-llama" / "tokenizer.json"))
    vocab_size = sp_tok.get_vocab_size()
    assert vocab_size == SP_VOCAB_SIZE

    bl_tok = make_bytelevel_tokenizer()
    bl_tok = Tokenizer.from_file(str(FIX / "bytelevel" / "tokenizer.json"))

    reader = smollm2_reader()
    smol_tok = make_smollm2_tokenizer(reader)
    smol_template = reader.fields["tokenizer.chat_template"].contents()
    from transformers import AutoTokenizer

    log("loading transformers' GGUF tokenizer for SmolLM2")
    smol_hf = AutoTokenizer.from_pretrained(str(SMOLLM2_PATH.parent), gguf_file=SMOLLM2_NAME)
    strings, smol_diffs, sp_mismatch = make_tokenizer_goldens(sp, sp_tok, bl_tok, smol_tok, smol_hf)
    make_chat_goldens(FIX / "tiny-llama", FIX / "bytelevel", smol_template, smol_hf, sp_tok, bl_tok, smol_tok)

    model = make_tiny_llama(vocab_size)
    write_tiny_gguf(model, sp, FIX / "tiny-llama-f32.gguf", q8=False)
    write_tiny_gguf(model, sp, FIX / "tiny-llama-q8_0.gguf", q8=True)
    check_gguf_roundtrip(FIX / "tiny-llama-f32.gguf", model)
    check_gguf_roundtrip(FIX / "tiny-llama-q8_0.gguf", model)
    prompts = prompts_for(sp_tok)
    make_logit_goldens(model, prompts, FIX / "tiny-llama-logits.json", with_q8=True,
                       about="tiny-llama (F32) logits from transformers for every position; logits_q8_0 with "
                             "every 2-D weight replaced by its Q8_0 round trip (as in tiny-llama-q8_0.gguf); "
                             "greedy: generate(do_sample=False, max_new_tokens=12); beam4: generate(num_beams=4, "
                             "do_sample=False, max_new_tokens=10, early_stopping=True, length_penalty=1.0).")
    check_gguf_with_transformers(FIX / "tiny-llama-logits.json")
    make_perplexity_golden(model, sp_tok)
    qwen = make_tiny_qwen2(vocab_size)
    make_logit_goldens(qwen, prompts, FIX / "tiny-qwen2-logits.json", with_q8=False,
                       about="tiny-qwen2 (F32) logits from transformers for every position; greedy and beam4 as "
                             "in tiny-llama-logits.json.")
    make_configs(vocab_size)
    make_gguf_types()
    make_safetensors_types()
    smol_ref = make_smollm2_reference(smol_tok)
    write_readme(vocab_size, bl_tok.get_vocab_size(), len(strings), smol_diffs, smol_ref, sp_mismatch)
    log("done")


def perplexity_only() -> None:
    """`--perplexity-only`: rewrites tiny-llama-perplexity.json from the committed tiny-llama alone."""
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    model = LlamaForCausalLM.from_pretrained(str(FIX / "tiny-llama"), dtype=torch.float32).eval()
    make_perplexity_golden(model, Tokenizer.from_file(str(FIX / "tiny-llama" / "tokenizer.json")))


if __name__ == "__main__":
    perplexity_only() if sys.argv[1:] == ["--perplexity-only"] else main()
