"""distill package.

``from distill import Encoder`` loads only the standalone encoder (torch, tokenizers, lattice): the
attribute is resolved lazily so importing the package never pulls in the trainer.
"""


def __getattr__(name):
    if name == "Encoder":
        from distill.encoder import Encoder

        return Encoder
    raise AttributeError(f"module 'distill' has no attribute {name!r}")


__all__ = ["Encoder"]
