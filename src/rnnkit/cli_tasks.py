"""``rnnkit classify | tag | seq2seq``: sequence tasks on users' TSV data (filled in by the task work)."""


def register(sub) -> None:
    return None
