"""The one exception latentlab raises for bad input: a sentence that says what is wrong and what to do."""


class InputError(ValueError):
    """bad input from the learner: the message is one sentence with the fix"""
