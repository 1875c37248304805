"""Language models as a tool: train on a corpus, score sentences and files, generate text."""
