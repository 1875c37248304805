"""``rnnkit train | eval | score | sample``: language models (filled in by the LM work)."""


def register(sub) -> None:
    return None
