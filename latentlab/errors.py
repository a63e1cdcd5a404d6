"""The one exception latentlab raises for bad input: a sentence that says what is wrong and what to do.

Every lesson meets it (lessons 05, 06 and 09 show one on purpose); the command line prints it as one line, exit 2.
"""


class InputError(ValueError):
    """bad input from the learner: the message is one sentence with the fix"""


def refusal(check) -> str | None:
    """the one sentence check() raises as an InputError, or None when it raises nothing: asks "what is missing?" of a
    function that refuses (latentlab.wallpapers, latentlab.gcompris)"""
    try:
        check()
    except InputError as err:
        return str(err)
    return None
