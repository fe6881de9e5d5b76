from dlcv import history


def test_tables_are_consistent():
    assert sum(history.ILSVRC2012_SPLITS.values()) == 1_431_167  # the lecture's figure
    years = [e.year for e in history.TIMELINE]
    assert years == sorted(years)
    red = dict((y, rel) for y, _, rel in history.error_reductions())
    assert abs(red[2012] - (1 - 16.4 / 25.8)) < 1e-12
    assert all(r.source for r in history.ILSVRC_CLASSIFICATION)


def test_every_source_is_in_the_bibliography():
    from pathlib import Path

    bib = (Path(__file__).resolve().parents[2] / "book" / "references.bib").read_text()
    for row in (*history.TIMELINE, *history.ILSVRC_CLASSIFICATION):
        assert "{" + row.source + "," in bib, row.source
