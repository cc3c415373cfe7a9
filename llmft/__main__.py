"""`python -m llmft VERB ...` (also what `torchrun -m llmft` runs)."""

from llmft.cli import main

if __name__ == "__main__":
    main()
