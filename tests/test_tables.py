from speechalign.tables import markdown, tsv


def test_tsv_and_markdown_golden():
    header, rows = ["system", "CER%", "utts"], [["a", "1.50", 3], ["b | c", 2.0, 0]]
    assert tsv(header, rows) == "system\tCER%\tutts\na\t1.50\t3\nb | c\t2.0\t0\n"
    assert markdown(header, rows) == ("| system | CER% | utts |\n|---|---|---|\n| a | 1.50 | 3 |\n"
                                      "| b | c | 2.0 | 0 |\n")
    assert markdown(header, []) == "| system | CER% | utts |\n|---|---|---|\n"
    assert tsv(header, iter(rows)) == tsv(header, rows)   # any iterable of rows
