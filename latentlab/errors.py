"""The one exception latentlab raises for bad input: a sentence that says what is wrong and what to do.

Every lesson meets it (lessons 05, 06 and 09 show one on purpose); the command line prints it as one line, exit 2.
"""


class InputError(ValueError):
    """bad input from the learner: the message is one sentence with the fix"""
