"""The suite's scheduling list (tests/conftest.py LONG_FILES) names files that exist: a renamed long file
would silently fall back to the end of xdist's queue."""

from pathlib import Path

from tests.conftest import LONG_FILES


def test_every_long_file_exists_and_leads_the_collection(request):
    tests = Path(__file__).parent
    assert all((tests / name).is_file() for name in LONG_FILES), LONG_FILES
    firsts = list(dict.fromkeys(item.nodeid.split("::")[0] for item in request.session.items))
    if len(firsts) > len(LONG_FILES):   # the whole suite was collected
        assert [f.removeprefix("tests/") for f in firsts[:len(LONG_FILES)]] == list(LONG_FILES)
