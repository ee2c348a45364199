"""The grader's switches. `--solution` grades the reference solution (the l2v library itself)
instead of the student's files — CI runs both: the untouched stubs must fail, the solution pass."""

import pytest

import grading


def pytest_addoption(parser):
    parser.addoption("--solution", action="store_true", help="grade the reference solution instead of your files")


def pytest_configure(config):
    grading.SOLUTION = config.getoption("--solution")
    config.addinivalue_line("filterwarnings", "ignore::FutureWarning")  # library deprecations are not the lesson
    # pytest's summary (its default "fE", or the repository's "-ra") would repeat every message, and in
    # full where CI is set: one line per failure is the report.
    if any(c in config.option.reportchars for c in "faA"):
        config.option.reportchars = "E"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run one check; a failure is reported as its teaching message alone, once."""
    assignment = pyfuncitem.path.stem.removeprefix("test_")
    # The integrity rule first: a file that uses l2v's own answer earns nothing, whatever it returns.
    problem = None if grading.SOLUTION else grading.integrity_problem(assignment)
    if problem is None:
        kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        try:
            pyfuncitem.obj(**kwargs)
            return True
        except Exception as e:  # the grader's message is the lesson; the grader's own code is not
            problem = grading.message(e)
    # Outside the `except`, so no "during handling of the above exception" chain follows the message.
    pytest.fail(problem, pytrace=False)
