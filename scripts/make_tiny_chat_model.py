"""Build the tiny chat model that ships in ``src/modelfleet/assets/tiny-chat/``.

The script makes everything from scratch, offline and deterministically:

1. a corpus of short English chat exchanges (greetings, small arithmetic, colours, capitals,
   animal sounds, opposites, counting, tiny stories, ...) plus plain prose, generated from
   built-in tables with a fixed seed;
2. a byte-level BPE tokenizer trained on that corpus with the ``tokenizers`` library, wrapped as
   a ``PreTrainedTokenizerFast`` with role markers and a Jinja chat template;
3. a small Llama-architecture causal LM trained briefly on the corpus with AdamW.

The result is an ordinary Hugging Face model directory (``model.safetensors``, ``config.json``,
``generation_config.json``, tokenizer files, ``README.md``) that ``AutoTokenizer`` and
``AutoModelForCausalLM`` load offline. It exists for demos and tests, not for real use.
At the end the script reloads the directory and checks that greedy generation terminates.

Run it from the repository root (about five minutes on a 2-core CPU, using one core)::

    python scripts/make_tiny_chat_model.py
    python scripts/make_tiny_chat_model.py --out /tmp/tiny-chat --steps 20 --seed 0

Same seed, steps and thread count give byte-identical weights.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# Keep the tokenizers library single-threaded so BPE training cannot depend on thread scheduling;
# the corpus is small, so this costs only a few seconds.
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# The script must never reach a model hub; everything it loads it wrote itself.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "src" / "modelfleet" / "assets" / "tiny-chat"

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SYSTEM, USER, ASSISTANT = "<|system|>", "<|user|>", "<|assistant|>"
# Order fixes the ids: <|bos|>=0, <|eos|>=1, <|pad|>=2, then the role markers.
SPECIAL_TOKENS = [BOS, EOS, PAD, SYSTEM, USER, ASSISTANT]

# Each turn is "<|role|>\n{content}<|eos|>\n"; <|eos|> doubles as end-of-turn so that generation
# stops at the end of the assistant's reply with the stock eos handling of `generate`.
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{- raise_exception('Unsupported role: ' + message['role']) -}}"
    "{%- endif -%}"
    "{{- '<|' + message['role'] + '|>\\n' + message['content'] | trim + eos_token + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|assistant|>\\n' -}}"
    "{%- endif -%}"
)

# Files this script writes (plus two that transformers writes by default, in case an older run left
# them); only these are removed from an existing output directory.
OUTPUT_FILES = (
    "model.safetensors",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "README.md",
)

# An upper bound: byte-level BPE never merges across words, and the corpus' small word list
# stops training at about 2,050 tokens.
VOCAB_SIZE = 3072
SEQ_LEN = 128
BATCH_SIZE = 16  # small batches, many updates: learnt the facts better per token here
DEFAULT_STEPS = 600  # about 4 minutes of CPU time on one core; 500 learnt far fewer facts
PEAK_LR = 3e-3
WARMUP_STEPS = 40
MAX_NEW_TOKENS = 64  # the self-check's limit, also the default in generation_config.json

Message = dict[str, str]

# ---------------------------------------------------------------------------------------------
# Built-in knowledge tables
# ---------------------------------------------------------------------------------------------

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Japan": "Tokyo", "China": "Beijing", "Egypt": "Cairo", "Canada": "Ottawa",
    "Kenya": "Nairobi", "Peru": "Lima", "Russia": "Moscow", "India": "New Delhi",
    "Norway": "Oslo", "Sweden": "Stockholm", "Greece": "Athens", "Ireland": "Dublin",
    "Portugal": "Lisbon", "Mexico": "Mexico City", "Australia": "Canberra",
    "Poland": "Warsaw", "Austria": "Vienna", "Turkey": "Ankara", "Chile": "Santiago",
    "Argentina": "Buenos Aires", "Cuba": "Havana", "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Thailand": "Bangkok", "Vietnam": "Hanoi", "Brazil": "Brasilia",
    "England": "London", "Scotland": "Edinburgh", "Belgium": "Brussels", "Hungary": "Budapest",
}  # fmt: skip

COLOURS = {
    "the sky": "blue", "grass": "green", "the sun": "yellow", "snow": "white",
    "a banana": "yellow", "a ripe tomato": "red", "a strawberry": "red", "an orange": "orange",
    "coal": "black", "milk": "white", "a lemon": "yellow", "a frog": "green",
    "a carrot": "orange", "chocolate": "brown", "the sea": "blue", "a leaf": "green",
    "a pumpkin": "orange", "a crow": "black", "a cloud": "white", "an elephant": "grey",
    "a fire truck": "red", "a plum": "purple", "soil": "brown", "a flamingo": "pink",
    "a polar bear": "white", "a lime": "green", "a blueberry": "blue", "a mouse": "grey",
    "a penguin": "black and white", "a zebra": "black and white",
}  # fmt: skip

SOUNDS = {
    "cow": "moo", "dog": "woof", "cat": "meow", "duck": "quack", "sheep": "baa",
    "pig": "oink", "horse": "neigh", "lion": "roar", "owl": "hoot", "frog": "ribbit",
    "bee": "buzz", "mouse": "squeak", "goat": "baa", "snake": "hiss", "wolf": "howl",
    "donkey": "hee-haw", "chicken": "cluck", "crow": "caw",
}  # fmt: skip

LEGS = {
    "spider": 8, "dog": 4, "cat": 4, "bird": 2, "ant": 6, "horse": 4, "chicken": 2,
    "cow": 4, "duck": 2, "bee": 6, "octopus": 8, "snake": 0, "fish": 0, "person": 2,
}  # fmt: skip

OPPOSITES = {
    "hot": "cold", "big": "small", "up": "down", "day": "night", "fast": "slow",
    "happy": "sad", "old": "new", "open": "closed", "light": "dark", "wet": "dry",
    "tall": "short", "full": "empty", "early": "late", "loud": "quiet", "hard": "soft",
    "left": "right", "in": "out", "good": "bad", "rich": "poor", "near": "far",
    "strong": "weak", "clean": "dirty", "win": "lose", "yes": "no", "black": "white",
}  # fmt: skip

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December",
]  # fmt: skip
NUMBER_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
]  # fmt: skip

NAMES = [
    "Tom", "Anna", "Ben", "Lily", "Max", "Mia", "Sam", "Zoe", "Leo", "Emma", "Jack", "Ella",
    "Noah", "Lucy", "Finn", "Ruby", "Oscar", "Ivy", "Hugo", "Nora", "Eli", "Rosa", "Milo",
    "Maya", "Theo", "Clara", "Omar", "Lena", "Arlo", "Iris",
]  # fmt: skip
CREATURES = [
    "rabbit", "fox", "bear", "cat", "dog", "mouse", "owl", "duck", "frog", "turtle",
    "squirrel", "hedgehog", "dragon", "robot", "penguin", "lion", "elephant", "monkey",
    "pony", "bird", "fish", "wolf", "goat", "tiger",
]  # fmt: skip
STORY_ADJECTIVES = [
    "little", "brave", "curious", "sleepy", "kind", "clever", "shy", "happy", "tiny", "old",
    "young", "gentle", "silly", "quiet", "busy", "friendly",
]  # fmt: skip
STORY_PLACES = [
    "in a small village", "in a big forest", "in a quiet town", "in a green valley",
    "on a sunny island", "in a tall castle", "in a cozy house", "in a busy city",
    "on a snowy mountain", "on a little farm", "in an old garden", "in a deep wood",
    "by a blue lake", "on a windy hill",
]  # fmt: skip
STORY_LIKES = [
    "read books", "play in the garden", "sing songs", "bake bread", "climb trees",
    "watch the stars", "draw pictures", "swim in the lake", "pick flowers", "build boxes",
    "run in the field", "collect stones", "fly kites", "dance in the rain", "plant seeds",
]  # fmt: skip
STORY_EVENTS = [
    "found a shiny key under a rock",
    "saw a rainbow over the hills",
    "met a lost puppy on the road",
    "heard a strange sound in the night",
    "found an old map in the attic",
    "got lost in the woods",
    "saw a falling star",
    "found a bird with a hurt wing",
    "lost a favourite hat in the wind",
    "found a small door in a tree",
    "woke up to deep white snow",
    "saw a big boat on the river",
]  # fmt: skip
STORY_ENDINGS = [
    "In the end, {name} was very happy.",
    "From that day on, {name} and the new friend played together every day.",
    "That night, {name} went to sleep with a big smile.",
    "{name} learned that it is good to be kind.",
    "And {name} never forgot that day.",
    "It was the best day ever.",
]  # fmt: skip

PROSE_NOUNS = [
    "river", "garden", "window", "teacher", "child", "farmer", "baker", "doctor", "sailor",
    "table", "chair", "kitchen", "school", "market", "bridge", "mountain", "forest", "road",
    "train", "boat", "letter", "basket", "lamp", "clock", "door", "bottle", "flower", "tree",
    "stone", "cloud", "storm", "village", "library", "painter", "musician", "student",
    "neighbour", "friend", "family", "city", "field", "hill", "candle", "blanket", "cup",
    "story", "song", "picture", "bicycle", "piano", "wagon", "island", "harbour", "tower",
    "beach", "meadow", "valley", "castle", "king", "queen", "knight", "wizard", "giant",
]  # fmt: skip
PROSE_ADJECTIVES = [
    "small", "large", "quiet", "noisy", "bright", "dark", "warm", "cold", "old", "new",
    "green", "red", "blue", "yellow", "soft", "heavy", "light", "busy", "empty", "famous",
    "strange", "beautiful", "wooden", "golden", "sleepy", "gentle", "tall", "narrow", "wide",
    "friendly", "careful", "clever", "lucky", "tired", "hungry", "happy", "patient", "simple",
]  # fmt: skip
PROSE_VERBS = [
    "walked to", "looked at", "waited near", "painted", "carried", "opened", "cleaned",
    "visited", "found", "watched", "built", "fixed", "left", "passed", "remembered", "followed",
    "closed", "climbed", "crossed", "reached", "described", "noticed", "admired", "repaired",
]  # fmt: skip
PROSE_TIMES = [
    "In the morning", "Every day", "Last summer", "On Sunday", "At night", "After lunch",
    "Before dinner", "In the winter", "One evening", "Long ago", "Yesterday", "In the spring",
    "At noon", "Later that day", "Once a week",
]  # fmt: skip
PROSE_ENDS = [
    "and then went home.", "because it was a fine day.", "while the sun was setting.",
    "and smiled.", "with great care.", "for a long time.", "before the rain started.",
    "and everyone was glad.", "as the birds sang.", "without a word.",
]  # fmt: skip

GREETINGS = [
    "Hello", "Hello!", "Hi", "Hi!", "Hey", "Hey there", "Hi there!", "Good morning",
    "Good morning!", "Good afternoon", "Good evening", "Hello, how are you?", "Hi, how are you?",
    "How are you?", "How are you today?", "Howdy", "Greetings",
]  # fmt: skip
GREETING_REPLIES = [
    "Hello! How can I help you today?",
    "Hi there! What can I do for you?",
    "Hello! It is nice to meet you.",
    "Hi! Ask me a simple question.",
    "Hello! I am here to help.",
]  # fmt: skip
HOW_ARE_YOU_REPLIES = [
    "I am doing well, thank you. How can I help you?",
    "I am fine, thanks for asking! What would you like to know?",
    "I am good, thank you. What can I do for you today?",
]  # fmt: skip
IDENTITY_QUESTIONS = [
    "Who are you?", "What is your name?", "What are you?", "Tell me about yourself.",
    "Are you a robot?", "What can you do?",
]  # fmt: skip
IDENTITY_REPLIES = [
    "I am Tiny, a very small chat model. I can answer simple questions.",
    "My name is Tiny. I am a small language model made for tests and demos.",
    "I am a tiny chat model. I know a little about numbers, colours, animals and capitals.",
]  # fmt: skip
THANKS = ["Thank you", "Thank you!", "Thanks", "Thanks!", "Thanks a lot", "Great, thanks!"]
THANKS_REPLIES = ["You are welcome!", "You are welcome. Have a nice day!", "Happy to help!"]
BYES = ["Goodbye", "Bye", "Bye!", "See you later", "Good night", "Goodbye!"]
BYE_REPLIES = ["Goodbye! Have a nice day.", "Bye! Take care.", "See you later!", "Good night!"]
JOKES = [
    "Why did the cat sit on the computer? To keep an eye on the mouse!",
    "What do you call a sleeping bull? A bulldozer!",
    "Why do fish live in salt water? Because pepper makes them sneeze!",
    "What do you call a bear with no teeth? A gummy bear!",
    "Why did the math book look sad? It had too many problems.",
]  # fmt: skip
UNKNOWN_TOPICS = [
    "quantum physics", "the stock market", "the news today", "the football score",
    "the meaning of life", "the weather tomorrow", "your favourite movie", "the best phone",
    "how to fix my car", "the history of Rome", "machine learning", "the price of gold",
]  # fmt: skip
UNKNOWN_REPLIES = [
    "I am sorry, I am only a tiny model and I do not know about that.",
    "I do not know. I am a very small model, so please ask me something simple.",
    "Sorry, that is too hard for me. I only know simple things.",
]  # fmt: skip
SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are a friendly assistant. Answer briefly.",
    "You are Tiny, a small helpful model.",
    "Answer the user's question in one short sentence.",
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Corpus generation
# ---------------------------------------------------------------------------------------------


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _a(noun: str) -> str:
    """The noun with its indefinite article ("an owl", "a cow")."""
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def make_story(rng: random.Random, max_sentences: int) -> str:
    """A templated story; chat replies use few sentences so that they end well within 64 tokens."""
    name = rng.choice(NAMES)
    creature = rng.choice(CREATURES)
    adjective = rng.choice(STORY_ADJECTIVES)
    sentences = [
        f"Once upon a time, there was {_a(adjective)} {creature} named {name}.",
        f"{name} lived {rng.choice(STORY_PLACES)} and liked to {rng.choice(STORY_LIKES)}.",
        f"One day, {name} {rng.choice(STORY_EVENTS)}.",
        rng.choice(STORY_ENDINGS).format(name=name),
    ]
    if max_sentences >= 5:
        friend = rng.choice([n for n in NAMES if n != name])
        sentences.insert(3, f"{_cap(_a(rng.choice(CREATURES)))} named {friend} came to help.")
    if max_sentences < len(sentences):
        # Drop middle sentences only, so every story keeps its opening and its ending.
        sentences = sentences[: max_sentences - 1] + sentences[-1:]
    return " ".join(sentences)


def arithmetic_exchange(rng: random.Random) -> tuple[str, str]:
    op = rng.choice(["plus", "plus", "minus", "times"])
    a, b = rng.randint(0, 10), rng.randint(0, 10)
    if op == "minus" and b > a:
        a, b = b, a  # answers stay non-negative
    result = {"plus": a + b, "minus": a - b, "times": a * b}[op]
    symbol = {"plus": "+", "minus": "-", "times": "*"}[op]
    question = rng.choice(
        [
            f"What is {a} {op} {b}?",
            f"What is {a} {op} {b}?",
            f"what is {a} {op} {b}",
            f"How much is {a} {op} {b}?",
            f"Can you tell me what {a} {op} {b} is?",
            f"What is {a} {symbol} {b}?",
            f"Calculate {a} {op} {b}.",
        ]
    )
    answer = rng.choice([f"{a} {op} {b} is {result}.", f"{a} {op} {b} equals {result}."])
    return question, answer


def capital_exchange(rng: random.Random) -> tuple[str, str]:
    country, city = rng.choice(list(CAPITALS.items()))
    question = rng.choice(
        [
            f"What is the capital of {country}?",
            f"What's the capital of {country}?",
            f"Which city is the capital of {country}?",
            f"Tell me the capital of {country}.",
        ]
    )
    return question, f"The capital of {country} is {city}."


def colour_exchange(rng: random.Random) -> tuple[str, str]:
    thing, colour = rng.choice(list(COLOURS.items()))
    question = rng.choice(
        [f"What colour is {thing}?", f"What color is {thing}?", f"Which colour is {thing}?"]
    )
    return question, f"{_cap(thing)} is {colour}."


def sound_exchange(rng: random.Random) -> tuple[str, str]:
    animal, sound = rng.choice(list(SOUNDS.items()))
    question = rng.choice([f"What sound does {_a(animal)} make?", f"What does {_a(animal)} say?"])
    return question, f"{_cap(_a(animal))} says {sound}."


def legs_exchange(rng: random.Random) -> tuple[str, str]:
    animal, legs = rng.choice(list(LEGS.items()))
    question = f"How many legs does {_a(animal)} have?"
    if legs == 0:
        return question, f"{_cap(_a(animal))} has no legs."
    return question, f"{_cap(_a(animal))} has {NUMBER_WORDS[legs]} legs."


def opposite_exchange(rng: random.Random) -> tuple[str, str]:
    word, opposite = rng.choice(list(OPPOSITES.items()))
    if rng.random() < 0.5:
        word, opposite = opposite, word
    question = rng.choice(
        [f"What is the opposite of {word}?", f"What is the opposite of '{word}'?"]
    )
    return question, f"The opposite of {word} is {opposite}."


def counting_exchange(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        end = rng.randint(2, 10)
        question = rng.choice([f"Count to {end}.", f"Can you count to {end}?", f"count to {end}"])
        start = 1
    else:
        start = rng.randint(1, 8)
        end = start + rng.randint(2, 6)
        question = f"Count from {start} to {end}."
    return question, ", ".join(str(n) for n in range(start, end + 1)) + "."


def calendar_exchange(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        i = rng.randrange(len(DAYS))
        after = DAYS[(i + 1) % len(DAYS)]
        return f"What day comes after {DAYS[i]}?", f"{after} comes after {DAYS[i]}."
    i = rng.randrange(len(MONTHS))
    after = MONTHS[(i + 1) % len(MONTHS)]
    return f"What month comes after {MONTHS[i]}?", f"{after} comes after {MONTHS[i]}."


def number_word_exchange(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(0, 20)
    if rng.random() < 0.5:
        return f"How do you write {n} in words?", f"{n} is written as {NUMBER_WORDS[n]}."
    return f"What number is {NUMBER_WORDS[n]}?", f"{_cap(NUMBER_WORDS[n])} is {n}."


def story_exchange(rng: random.Random) -> tuple[str, str]:
    question = rng.choice(
        [
            "Tell me a story.",
            "Tell me a story",
            "Tell me a short story.",
            "Can you tell me a story?",
            "Please tell me a story.",
            f"Tell me a story about a {rng.choice(CREATURES)}.",
        ]
    )
    return question, make_story(rng, max_sentences=rng.choice([3, 4]))


def joke_exchange(rng: random.Random) -> tuple[str, str]:
    question = rng.choice(["Tell me a joke.", "Do you know a joke?", "Say something funny."])
    return question, rng.choice(JOKES)


def small_talk_exchange(rng: random.Random) -> tuple[str, str]:
    kind = rng.random()
    if kind < 0.4:
        greeting = rng.choice(GREETINGS)
        replies = HOW_ARE_YOU_REPLIES if "how are you" in greeting.lower() else GREETING_REPLIES
        return greeting, rng.choice(replies)
    if kind < 0.6:
        return rng.choice(IDENTITY_QUESTIONS), rng.choice(IDENTITY_REPLIES)
    if kind < 0.8:
        return rng.choice(THANKS), rng.choice(THANKS_REPLIES)
    return rng.choice(BYES), rng.choice(BYE_REPLIES)


def unknown_exchange(rng: random.Random) -> tuple[str, str]:
    topic = rng.choice(UNKNOWN_TOPICS)
    question = rng.choice(
        [f"What do you know about {topic}?", f"Tell me about {topic}.", f"Explain {topic}."]
    )
    return question, rng.choice(UNKNOWN_REPLIES)


# Weights favour the exchanges the self-check and the demos use (arithmetic, capitals, stories).
EXCHANGES: list[tuple[Callable[[random.Random], tuple[str, str]], int]] = [
    (arithmetic_exchange, 8),
    (capital_exchange, 3),
    (colour_exchange, 2),
    (sound_exchange, 2),
    (legs_exchange, 1),
    (opposite_exchange, 2),
    (counting_exchange, 2),
    (calendar_exchange, 1),
    (number_word_exchange, 1),
    (story_exchange, 3),
    (joke_exchange, 1),
    (small_talk_exchange, 4),
    (unknown_exchange, 1),
]


def make_conversation(rng: random.Random) -> list[Message]:
    funcs = [f for f, _ in EXCHANGES]
    weights = [w for _, w in EXCHANGES]
    messages: list[Message] = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    turns = rng.choices([1, 2, 3], weights=[7, 2, 1])[0]
    for _ in range(turns):
        question, answer = rng.choices(funcs, weights=weights)[0](rng)
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": answer})
    return messages


def make_fact_sentence(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        country, city = rng.choice(list(CAPITALS.items()))
        return rng.choice(
            [f"The capital of {country} is {city}.", f"{city} is the capital of {country}."]
        )
    if kind == 1:
        thing, colour = rng.choice(list(COLOURS.items()))
        return f"{_cap(thing)} is {colour}."
    if kind == 2:
        animal, sound = rng.choice(list(SOUNDS.items()))
        return f"{_cap(_a(animal))} says {sound}."
    if kind == 3:
        a, b = rng.randint(0, 10), rng.randint(0, 10)
        return f"{_cap(NUMBER_WORDS[a])} plus {NUMBER_WORDS[b]} is {NUMBER_WORDS[a + b]}."
    if kind == 4:
        word, opposite = rng.choice(list(OPPOSITES.items()))
        return f"The opposite of {word} is {opposite}."
    i = rng.randrange(len(DAYS))
    return f"After {DAYS[i]} comes {DAYS[(i + 1) % len(DAYS)]}."


def make_prose_sentence(rng: random.Random) -> str:
    subject = f"the {rng.choice(PROSE_ADJECTIVES)} {rng.choice(PROSE_NOUNS)}"
    if rng.random() < 0.4:
        subject = rng.choice(NAMES)
    obj = f"the {rng.choice(PROSE_ADJECTIVES)} {rng.choice(PROSE_NOUNS)}"
    verb = rng.choice(PROSE_VERBS)
    if rng.random() < 0.5:
        return f"{rng.choice(PROSE_TIMES)}, {subject} {verb} {obj} {rng.choice(PROSE_ENDS)}"
    return f"{_cap(subject)} {verb} {obj} {rng.choice(PROSE_ENDS)}"


def make_prose(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:
        return make_story(rng, max_sentences=rng.choice([4, 5]))
    if kind < 0.7:
        return " ".join(make_prose_sentence(rng) for _ in range(rng.randint(2, 5)))
    return " ".join(make_fact_sentence(rng) for _ in range(rng.randint(2, 5)))


def make_corpus(seed: int, n_chats: int, n_prose: int) -> tuple[list[list[Message]], list[str]]:
    rng = random.Random(seed)
    chats = [make_conversation(rng) for _ in range(n_chats)]
    prose = [make_prose(rng) for _ in range(n_prose)]
    return chats, prose


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------


def train_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    # add_prefix_space=False keeps "Hello" at the start of a turn a single word-initial token.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        # The full byte alphabet keeps every input encodable, even characters the corpus lacks.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=[SYSTEM, USER, ASSISTANT],
        # Raw completion prompts get <|bos|> like every training document; the chat template
        # adds it itself, and apply_chat_template does not add special tokens again.
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=512,
        padding_side="left",  # left padding is what batched generation needs
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


# ---------------------------------------------------------------------------------------------
# Model and training
# ---------------------------------------------------------------------------------------------


def make_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=344,  # ~ 4 * 128 * 2/3, rounded to a multiple of 8 (SwiGLU sizing)
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attention_dropout=0.0,
        initializer_range=0.02,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    return model


def encode_corpus(
    tokenizer: PreTrainedTokenizerFast, chats: list[list[Message]], prose: list[str], seed: int
) -> torch.Tensor:
    """Render every document, shuffle them, and pack them into one token stream."""
    docs = [str(tokenizer.apply_chat_template(c, tokenize=False)) for c in chats]
    docs += [BOS + p + EOS for p in prose]
    random.Random(seed + 1).shuffle(docs)
    # Every document already carries its own <|bos|>/<|eos|>, so no further specials are added.
    ids = tokenizer(docs, add_special_tokens=False)["input_ids"]
    return torch.tensor([t for doc in ids for t in doc], dtype=torch.long)


def lr_at(step: int, total: int) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak."""
    if step < WARMUP_STEPS:
        return PEAK_LR * (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(1, total - WARMUP_STEPS)
    return PEAK_LR * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def batches(stream: torch.Tensor, steps: int, seed: int) -> Iterator[torch.Tensor]:
    """Random SEQ_LEN windows of the packed stream, drawn from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    max_start = stream.numel() - SEQ_LEN
    offsets = torch.arange(SEQ_LEN)
    for _ in range(steps):
        starts = torch.randint(0, max_start, (BATCH_SIZE,), generator=gen)
        yield stream[starts[:, None] + offsets]


def train(model: LlamaForCausalLM, stream: torch.Tensor, steps: int, seed: int) -> float:
    model.train()
    # Weight decay on matrices only; decaying norm gains just fights the normalisation.
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=PEAK_LR,
        betas=(0.9, 0.95),
        # The plain per-tensor loop: with 38 small tensors the multi-tensor path saves nothing.
        foreach=False,
    )
    smoothed = float("nan")
    columns = (
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as progress:
        task = progress.add_task("train", total=steps, loss=float("nan"))
        for step, batch in enumerate(batches(stream, steps, seed)):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps)
            loss = model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            value = loss.item()
            smoothed = value if math.isnan(smoothed) else 0.95 * smoothed + 0.05 * value
            progress.update(task, advance=1, loss=smoothed)
    model.eval()
    return smoothed


# ---------------------------------------------------------------------------------------------
# Output and self-check
# ---------------------------------------------------------------------------------------------


README_TEMPLATE = """\
# tiny-chat

A tiny Llama-architecture chat model ({params:,} parameters, {layers} layers, hidden size
{hidden}, byte-level BPE vocabulary of {vocab} tokens, float32 weights).

It was trained from scratch by `scripts/make_tiny_chat_model.py` (seed {seed}, {steps} steps)
on text that the script generates itself: short chat exchanges about small arithmetic, colours,
capitals, animal sounds, counting and tiny stories, plus simple English prose. No external data or
pretrained weights were used.

It is meant for demos and tests only (it loads in well under a second and answers in the chat
format, then stops), not for real use: its answers are often wrong.

Chat format, applied by the tokenizer's chat template:

```
<|bos|><|system|>
You are a helpful assistant.<|eos|>
<|user|>
What is 2 plus 3?<|eos|>
<|assistant|>
```

`<|eos|>` ends every turn and is the generation stop token.

Regenerate with `python scripts/make_tiny_chat_model.py`.
"""


def prepare_out_dir(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # Remove only files this script writes, so stale outputs never survive a rebuild but a
    # mistaken --out never deletes anything else.
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)


def make_tokenizer_config_portable(path: Path) -> None:
    """Rewrite the v5-only fields of tokenizer_config.json so transformers 4.x loads it too.

    The project supports transformers>=4.45. transformers 5 records the class as
    "TokenizersBackend" and the role markers as a list under "extra_special_tokens"; 4.x knows
    neither (it expects a dict there). "PreTrainedTokenizerFast" and
    "additional_special_tokens" mean the same thing to both versions.
    """
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    if isinstance(config.get("extra_special_tokens"), list):
        config["additional_special_tokens"] = config.pop("extra_special_tokens")
    path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def save(
    out: Path, model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, seed: int, steps: int
) -> None:
    prepare_out_dir(out)
    model.save_pretrained(out, safe_serialization=True)
    # safetensors creates the file owner-only; match the other files so any install can read it.
    (out / "model.safetensors").chmod(0o644)
    # The template goes into tokenizer_config.json rather than chat_template.jinja because
    # transformers 4.x before 4.49 only reads it from there.
    tokenizer.save_pretrained(out, save_jinja_files=False)
    make_tokenizer_config_portable(out / "tokenizer_config.json")
    (out / "README.md").write_text(
        README_TEMPLATE.format(
            params=model.num_parameters(),
            layers=model.config.num_hidden_layers,
            hidden=model.config.hidden_size,
            vocab=model.config.vocab_size,
            seed=seed,
            steps=steps,
        )
    )


def self_check(out: Path) -> bool:
    """Reload from disk like a user would and check that greedy generation terminates."""
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    model.eval()
    chat_prompts: list[list[Message]] = [
        [{"role": "user", "content": "What is 2 plus 3?"}],
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    ]
    prompts = [
        str(tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False))
        for m in chat_prompts
    ]
    print("\nRendered chat prompt:", repr(prompts[0]))
    encoded = [tokenizer(p, add_special_tokens=False, return_tensors="pt") for p in prompts]
    encoded.append(tokenizer("Once upon a time", return_tensors="pt"))
    any_eos = False
    for enc in encoded:
        with torch.no_grad():
            # transformers 5 annotates generate()'s self so narrowly that mypy rejects any model.
            output = model.generate(  # type: ignore[misc]
                **enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False
            )
        new = output[0, enc["input_ids"].shape[1] :].tolist()
        ended = tokenizer.eos_token_id in new
        any_eos = any_eos or ended
        prompt_text = tokenizer.decode(enc["input_ids"][0], skip_special_tokens=False)
        print(f"\n--- prompt: {prompt_text!r}")
        print(f"    output: {tokenizer.decode(new, skip_special_tokens=False)!r}")
        print(f"    {len(new)} new tokens, ended with eos: {ended}")
    return any_eos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps")
    parser.add_argument("--seed", type=int, default=0, help="seed for corpus, init and batches")
    # One thread: at this model size a second thread adds more synchronisation than speed (on the
    # 2-core build machine steps were 1.5-3.5x slower with two), and the thread count is one of
    # the things that fixes the order of float reductions, hence the exact weights.
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (changing it may change the weights)"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    random.seed(args.seed)
    torch.manual_seed(args.seed)

    started = time.perf_counter()
    chats, prose = make_corpus(args.seed, n_chats=40_000, n_prose=6_000)
    print(f"Corpus: {len(chats):,} conversations, {len(prose):,} prose passages")

    # The tokenizer sees the same rendered text the model trains on, markers excluded (they are
    # special tokens and never split).
    tokenizer_texts = [m["content"] for chat in chats for m in chat] + prose
    tokenizer = train_tokenizer(tokenizer_texts)
    print(f"Tokenizer: {len(tokenizer):,} tokens")

    stream = encode_corpus(tokenizer, chats, prose, args.seed)
    print(f"Training stream: {stream.numel():,} tokens")

    torch.manual_seed(args.seed)  # init must not depend on how much randomness came before
    model = make_model(tokenizer)
    print(f"Model: {model.num_parameters():,} parameters")

    train_started = time.perf_counter()
    final_loss = train(model, stream, args.steps, args.seed)
    train_seconds = time.perf_counter() - train_started
    print(f"Trained {args.steps} steps in {train_seconds:.0f}s, final loss {final_loss:.3f}")

    save(args.out, model, tokenizer, args.seed, args.steps)
    size = sum(f.stat().st_size for f in args.out.iterdir() if f.is_file())
    print(f"Wrote {args.out} ({size / 1e6:.2f} MB)")

    ok = self_check(args.out)
    print(f"\nTotal time {time.perf_counter() - started:.0f}s")
    if not ok:
        print("Self-check failed: no generation ended with <|eos|>", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
