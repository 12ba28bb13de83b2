"""The CLI's error contract as a test helper: one `error:` line on stderr, the exit code, no traceback."""


def one_line_error(done, *fragments, code=1):
    """Assert the contract on a finished subprocess and return the error line (each fragment must be in it)."""
    assert done.returncode == code, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
