"""The cascade baseline (retrieval.text): the speech-retrieval protocols over transcripts."""

import re

import numpy as np
import pytest
import soundfile as sf

from speechalign.data.manifest import cut_meta, iter_cuts
from speechalign.decode.report import Utterance, write_reports
from speechalign.retrieval.compare import compare, compare_yubao, read_yubao_table
from speechalign.retrieval.search import retrieve
from speechalign.retrieval.text import TextSet, load_texts, text_retrieve, text_similarity, text_yubao, tfidf_rows
from speechalign.retrieval.vectors import l2_normalize
from speechalign.retrieval.yubao import yubao_protocol

POOL = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可里后"


def text_set(rows, dialect_of_site=None):
    """TextSet from (site, subgroup, sentence id, text) rows; the dialect is the site unless mapped."""
    sites, groups, sids, texts = map(list, zip(*rows))
    dialects = [(dialect_of_site or {}).get(s, s) for s in sites]
    arr = lambda x: np.array(x, dtype=object)
    return TextSet([f"{s}-{i}" for s, _, i, _ in rows], texts, arr(dialects), arr(sites), arr(groups), arr(sids),
                   "test")


def planted(seed=0, n=12, distractors=24):
    """Queries (dialect Q) and a gallery (dialect G): per query one near duplicate (one character
    substituted, or the same text in traditional characters with punctuation) with its sentence id,
    and distractors that share the query's first half."""
    rng = np.random.default_rng(seed)
    sentence = lambda k=10: "".join(rng.choice(list(POOL), k))
    rows = []
    for i in range(n):
        q = sentence()
        near = q[:4] + POOL[(POOL.index(q[4]) + 1) % len(POOL)] + q[5:]
        rows += [("Q", "q", f"s{i}", q), ("G", "g", f"s{i}", near)]
        for j in range(distractors // n):
            rows.append(("G", "g", f"d{i}-{j}", q[:5] + sentence(5)))
    rows += [("Q", "q", "trad", "我們說話。"), ("G", "g", "trad", "我们说话")]
    return text_set(rows)


def test_planted_nearest_text_is_top_and_r1_is_one():
    ts = planted()
    neighbours = []
    rows = text_retrieve(ts, query="Q", gallery="G", neighbours=neighbours)
    assert [(r["query"], r["gallery"]) for r in rows] == [("Q", "G"), ("mean", "mean")]
    assert rows[0]["R@1"] == 1.0 and rows[0]["MRR"] == 1.0 and rows[0]["queries"] == 13
    top = {ts.ids[q]: ts.ids[g] for _, _, q, rank, g, _, correct in neighbours if rank == 1}
    assert top == {qid: qid.replace("Q-", "G-") for qid in ts.ids if qid.startswith("Q-")}
    assert all(correct for *_, rank, _, _, correct in neighbours if rank == 1)
    # normalization first: traditional + punctuation equals the simplified text exactly
    trad = [s for a, b, q, rank, g, s, c in neighbours if ts.ids[q] == "Q-trad" and rank == 1]
    assert trad == [pytest.approx(1.0)]


def test_similarity_hooks_equal_the_vector_protocols():
    """The precomputed-similarity path of retrieve / yubao_protocol is the vector path, given cosines."""
    rng = np.random.default_rng(3)
    sites = np.repeat(["a0", "a1", "b0", "c0"], 10)
    groups = np.repeat(["gan", "gan", "min", "yue"], 10)
    sids = np.tile([f"{i}" for i in range(10)], 4)
    content = rng.standard_normal((10, 6))
    v = l2_normalize((content[np.tile(np.arange(10), 4)] + 0.9 * rng.standard_normal((40, 6))).astype(np.float32))
    cos = lambda a, b: v[a] @ v[b].T
    pooled = yubao_protocol(sites, groups, sids, v, None, "pooled")
    hooked = yubao_protocol(sites, groups, sids, mode="text", similarity=cos)
    np.testing.assert_allclose(hooked.table, pooled.table)
    assert hooked.per_site_pair == pooled.per_site_pair
    by_vectors = retrieve(v, None, sites, sids, "pooled")
    by_hook = retrieve(None, None, sites, sids, similarity=cos)
    for r, h in zip(by_vectors, by_hook):
        assert (r["query"], r["gallery"]) == (h["query"], h["gallery"])
        for k in ("R@1", "R@5", "R@10", "MRR", "queries", "skipped"):
            assert h[k] == pytest.approx(r[k])


def test_tie_rule_is_the_protocols_pessimistic_one():
    """yubao.py / metrics.py: a tie with a wrong target is a miss. Two identical gallery texts, one
    correct and one not: rank 2 (R@1 0, MRR 0.5), for texts as for identical vectors."""
    rows = [("A", "min", "s1", "甲乙丙丁"), ("A", "min", "s2", "戊己庚辛"),
            ("B", "hak", "s1", "甲乙丙丁"), ("B", "hak", "s2", "甲乙丙丁")]   # B's s2 reads like its s1
    ts = text_set(rows)
    pairs = {(r["query"], r["gallery"]): r for r in text_retrieve(ts, query="A", gallery="B")}
    ab = pairs[("A", "B")]
    # s1 ties B's s1 and s2: rank 2; s2 shares nothing with either B text: both score 0, rank 2 as well
    assert ab["R@1"] == 0.0 and ab["R@5"] == 1.0 and ab["MRR"] == pytest.approx(0.5)
    sim = text_similarity(["甲乙丙丁"], ["甲乙丙丁", "甲乙丙丁"])
    assert sim[0, 0] == sim[0, 1]   # bit-identical, so the tie is a real tie
    text = text_yubao(ts)
    # the same utterances as vectors: identical texts -> identical vectors
    vec = {"甲乙丙丁": [1.0, 0.0], "戊己庚辛": [0.0, 1.0]}
    v = np.array([vec[t] for *_, t in rows], dtype=np.float32)
    pooled = yubao_protocol(ts.sites, ts.subgroups, ts.sentence_ids, v, None, "pooled")
    assert text.subgroups == pooled.subgroups == ["min", "hak"]
    np.testing.assert_array_equal(text.table, pooled.table)
    # min -> hak: s1 ties B's s1 and s2 (miss), s2 matches nothing (miss); hak -> min: B's s1 finds A's s1
    # (hit), B's s2 finds A's s1 (miss)
    np.testing.assert_array_equal(text.table, [[np.nan, 0.0], [50.0, np.nan]])


def test_empty_texts_score_zero_and_do_not_crash():
    assert tfidf_rows(["", "。，！", "  "]).nnz == 0     # TfidfVectorizer alone refuses an empty vocabulary
    assert tfidf_rows([]).shape[0] == 0
    np.testing.assert_allclose(text_similarity(["", "甲乙"], ["甲乙", ""]), [[0.0, 0.0], [1.0, 0.0]])
    rows = [(site, g, f"s{i}", "") for site, g in (("A", "min"), ("B", "hak")) for i in range(3)]
    ts = text_set(rows)
    result = text_yubao(ts)
    np.testing.assert_array_equal(result.table, [[np.nan, 0.0], [0.0, np.nan]])   # constant scores: no lucky hits
    pairs = text_retrieve(ts)
    assert all(r["R@1"] == 0.0 for r in pairs)


# The tiny 2-site corpus: site A (min) and B (hak) read 5 sentences. References are close (B adds
# "啊"); the hypotheses in the recogs file below: A's are its references; B's s1 has one extra
# character, its s3 was heard as its s2 (a tie for A's s2, and a miss for itself), its s4 is empty.
A_REFS = ["甲乙丙丁", "戊己庚辛", "子丑寅卯", "辰巳午未", "申酉戌亥"]
B_HYPS = ["甲乙丙丁", "戊己庚辛壬", "子丑寅卯", "子丑寅卯", ""]
# min -> hak: s0 s1 hit; s2 ties B's s2 and s3 (miss); s3 matches nothing (tie at 0, miss); s4 vs empty: miss.
# hak -> min: s0 s1 s2 hit; s3 ("子丑寅卯") finds A's s2: miss; s4 empty: miss.
EXPECTED_HYP_TABLE = [[np.nan, 40.0], [60.0, np.nan]]


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory):
    from data_prep.custom import prepare_custom

    root = tmp_path_factory.mktemp("two_sites")
    t = np.arange(1600) / 16000
    rows = ["audio\ttext\tdialect\tsentence_id\tsite\tsubgroup"]
    for site, group, dialect in (("A", "min", "Hokkien"), ("B", "hak", "Hakka")):
        for i, ref in enumerate(A_REFS):
            sf.write(root / f"{site}{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32), 16000)
            rows.append(f"{site}{i}.wav\t{ref + ('啊' if site == 'B' else '')}\t{dialect}\t{i}\t{site}\t{group}")
    (root / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    prepare_custom(root, root / "m", corpus="two")
    cuts = root / "m" / "two_cuts_test.jsonl.gz"
    meta = [cut_meta(c) for c in iter_cuts(cuts)]
    assert len(meta) == 10
    hyps = {("A", i): h for i, h in enumerate(A_REFS)} | {("B", i): h for i, h in enumerate(B_HYPS)}
    utts = [Utterance(m["id"], m["dialect"], m["text"], hyps[(m["site"], int(m["sentence_id"]))]) for m in meta]
    write_reports(root / "decode", "two_test", "attention_beam", utts)
    return {"cuts": cuts, "recogs": root / "decode" / "recogs-two_test-attention_beam.txt", "root": root}


def test_yubao_over_a_manifest_and_a_recogs_file(two_sites):
    ceiling = text_yubao(load_texts(two_sites["cuts"]))
    assert ceiling.subgroups == ["min", "hak"]
    np.testing.assert_array_equal(ceiling.table, [[np.nan, 100.0], [100.0, np.nan]])
    ts = load_texts(two_sites["recogs"], two_sites["cuts"])
    assert ts.texts.count("") == 1 and set(ts.sites) == {"A", "B"}
    hyp = text_yubao(ts)
    np.testing.assert_array_equal(hyp.table, EXPECTED_HYP_TABLE)
    assert [(a, b, sa, sb, n) for a, b, sa, sb, n, _ in hyp.per_site_pair] == [("min", "hak", "A", "B", 5),
                                                                             ("hak", "min", "B", "A", 5)]
    # the recogs file's own (normalized) references are the ceiling too
    np.testing.assert_array_equal(text_yubao(load_texts(two_sites["recogs"], two_sites["cuts"], "ref")).table,
                                  ceiling.table)


def test_recogs_needs_the_manifest_and_shared_ids(two_sites, tmp_path):
    with pytest.raises(ValueError, match="--cuts"):
        load_texts(two_sites["recogs"])
    lines = two_sites["recogs"].read_text(encoding="utf-8").splitlines()
    other = tmp_path / "recogs-x-y.txt"
    other.write_text("\n".join(lines[:2] + ["zz\tHakka\t甲\t甲"]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no utterance id"):
        load_texts(other, two_sites["cuts"])
    # a recogs file covering part of the manifest: the rest is left out, not scored as empty
    other.write_text("\n".join(lines[:2] + lines[4:]) + "\n", encoding="utf-8")
    assert len(load_texts(other, two_sites["cuts"]).ids) == 8


def test_cli_writes_the_tables_compare_and_compare_yubao_read(two_sites, tmp_path):
    from speechalign.cli import main
    from speechalign.retrieval.report import write_yubao

    out = tmp_path / "cascade"
    assert main(["retrieve-text", "--texts", str(two_sites["recogs"]), "--cuts", str(two_sites["cuts"]),
                 "--protocol", "yubao", "pairs", "--out", str(out), "--name", "cascade-test"]) == 0
    for name in ("yubao-text-tfidf.tsv", "yubao-text-tfidf.md", "yubao-text-tfidf.tex", "yubao-text-tfidf.png",
                 "yubao-text-tfidf-site-pairs.tsv", "text-tfidf.tsv", "text-tfidf.md", "neighbours/text-tfidf.tsv"):
        assert (out / name).is_file(), name
    assert "cascade-test" in (out / "yubao-text-tfidf.md").read_text(encoding="utf-8")
    np.testing.assert_array_equal(read_yubao_table(out / "yubao-text-tfidf.tsv"), EXPECTED_HYP_TABLE)

    # an embedding system's tables beside it (what retrieve --protocol yubao writes)
    emb = tmp_path / "emb"
    ts = load_texts(two_sites["cuts"])
    v = l2_normalize(np.random.default_rng(0).standard_normal((len(ts.ids), 4)).astype(np.float32))
    for layer in (1, 2):
        write_yubao(yubao_protocol(ts.sites, ts.subgroups, ts.sentence_ids, v, None, "pooled"), emb,
                    f"yubao-pooled-L{layer}-mean", "random vectors")
    md = compare_yubao([("emb", emb), ("cascade", out)], tmp_path / "cmp", "t").read_text(encoding="utf-8")
    assert "| system | pooled | text | best |" in md
    assert "| cascade |  | 50.0 | 50.0 (text) |" in md
    assert re.search(r"^\| emb \| \d+\.\d \(L[12]\) \|  \| \d+\.\d \(pooled, L[12]\) \|$", md, re.M)   # as before
    assert (tmp_path / "cmp.png").is_file()

    # query -> gallery: the pair table has retrieve's shape, so compare reads it
    cmp = compare([("cascade", out / "text-tfidf.tsv")], "Hokkien", "Hakka", tmp_path / "pairs", "t")
    row = [ln for ln in cmp.read_text(encoding="utf-8").splitlines() if ln.startswith("| cascade")]
    # ranks 1, 1, 2 (tie), 5 and 5 (scores 0 everywhere: every wrong item ties)
    assert row == ["| cascade | 0.400 | 1.000 | 1.000 | 0.580 | 5 | 0.200 |"]
    assert main(["retrieve-text", "--texts", str(two_sites["cuts"]), "--query", "Hakka", "--gallery", "Hokkien",
                 "--out", str(tmp_path / "ceiling")]) == 0
    assert (tmp_path / "ceiling" / "text-tfidf.tsv").read_text(encoding="utf-8").splitlines()[2].split("\t")[:7] == \
        ["Hakka", "Hokkien", "1.0000", "1.0000", "1.0000", "1.0000", "5"]


def test_cli_systems_write_one_dir_each_equal_to_single_runs(two_sites, tmp_path):
    from speechalign.cli import main

    args = ["--cuts", str(two_sites["cuts"]), "--protocol", "yubao"]
    assert main(["retrieve-text", "--systems", f"hyp={two_sites['recogs']}", f"ref={two_sites['cuts']}",
                 "--out", str(tmp_path / "all"), *args]) == 0
    assert main(["retrieve-text", "--texts", str(two_sites["recogs"]), "--out", str(tmp_path / "one"), *args]) == 0
    np.testing.assert_array_equal(read_yubao_table(tmp_path / "all" / "hyp" / "yubao-text-tfidf.tsv"),
                                  read_yubao_table(tmp_path / "one" / "yubao-text-tfidf.tsv"))
    assert "ref" in (tmp_path / "all" / "ref" / "yubao-text-tfidf.md").read_text(encoding="utf-8")
    assert main(["retrieve-text", "--systems", "x=/no/such.txt", "--out", str(tmp_path / "bad"), *args]) != 0
    assert main(["retrieve-text", "--systems", f"hyp={two_sites['recogs']}", "--name", "n",
                 "--out", str(tmp_path / "bad"), *args]) != 0
