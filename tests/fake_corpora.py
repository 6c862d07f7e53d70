"""Fake corpus directory trees in each corpus's real layout (tiny tone audio), shared by the adapter
tests and the egs/<corpus>/run.sh dry runs."""

import json
import subprocess

from speechalign.text.normalize import is_han
from tests.conftest import write_tone

CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n"
YUBAO_SITES = {"04G96": ("上海_市区_杨浦区", "wuu"), "18E38": ("江西_吉安_万安", "gan"), "18E40": ("江西_宜春_奉新", "gan")}


def aishell_tree(root):
    write_tone(root / "data_aishell/wav/train/S0002/BAC009S0002W0122.wav", 1.0)
    write_tone(root / "data_aishell/wav/train/S0002/BAC009S0002W0123.wav", 1.5, sr=8000)
    write_tone(root / "data_aishell/wav/train/S0002/BAC009S0002W0124.wav", 0.5)       # punctuation only
    write_tone(root / "data_aishell/wav/train/S0002/BAC009S0002W0999.wav", 0.5)       # no transcript
    write_tone(root / "data_aishell/wav/dev/S0724/BAC009S0724W0121.wav", 2.0, channels=2)
    write_tone(root / "data_aishell/wav/test/S0764/BAC009S0764W0121.wav", 1.2)
    t = root / "data_aishell/transcript/aishell_transcript_v0.8.txt"
    t.parent.mkdir(parents=True)
    t.write_text("BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购\nBAC009S0002W0123 也 成为 地方 政府 的 眼中 钉\n"
                 "BAC009S0002W0124 ， 。\nBAC009S0724W0121 甚至 出现 交易 几乎 停滞 的 情况\n"
                 "BAC009S0764W0121 甚至 出现 交易 幾乎 停滯 的 情況\n", encoding="utf-8")
    return root


def kespeech_tree(root, parts=("train_phase1",)):
    """Utterance ids of parts other than train_phase1 get the part name as prefix."""
    rows = [("1001_a", "Mandarin", "今天天氣很好", "spk1", 1.0), ("1002_b", "Southwestern", "我们去吃火锅", "spk2", 1.3),
            ("1003_c", "Lan-Yin", "<SPOKEN_NOISE>", "spk3", 0.7), ("1004_d", "Jiao-Liao", "海边的风很大", "spk4", 0.9)]
    for part_name in parts:
        part = root / "Tasks/ASR" / part_name
        part.mkdir(parents=True)
        files = {n: [] for n in ("wav.scp", "text", "utt2subdialect", "utt2spk")}
        for utt, dialect, text, spk, dur in rows:
            utt = utt if part_name == "train_phase1" else f"{part_name}-{utt}"
            write_tone(root / f"Audio/{utt}.wav", dur)
            files["wav.scp"].append(f"{utt} Audio/{utt}.wav")
            files["text"].append(f"{utt} {text}")
            files["utt2subdialect"].append(f"{utt} {dialect}")
            files["utt2spk"].append(f"{utt} {spk}")
        for name, lines in files.items():
            (part / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def cv_tree(root):
    rows = {"zh-CN": [("a1", "今天天气很好。", 16000), ("a2", "我们去公园", 48000)],
            "zh-HK": [("b1", "我哋今日去街！", 48000), ("b2", "，", 48000)],
            "zh-TW": [("c1", "這個不行", 32000)]}
    def clip(lang: str, stem: str, text: str, sr: int) -> str:
        write_tone(root / lang / "clips" / f"common_voice_{stem}.mp3", 1.2, sr=sr, subtype="MPEG_LAYER_III")
        return f"spk-{stem}\tcommon_voice_{stem}.mp3\t{text}\t2\t0\t\t\t\t\t{lang}\t\n"

    # Each split its own clips, as in Common Voice: a clip in two splits would be a leak.
    for lang, items in rows.items():
        lines = [clip(lang, stem, text, sr) for stem, text, sr in items]
        (root / lang / "train.tsv").write_text(CV_HEADER + "".join(lines), encoding="utf-8")
        dev = clip(lang, f"{items[0][0]}-dev", *items[0][1:])
        (root / lang / "dev.tsv").write_text(CV_HEADER + dev + f"x\tcommon_voice_missing.mp3\t缺\t2\t0\t\t\t\t\t{lang}\t\n",
                                             encoding="utf-8")
        (root / lang / "test.tsv").write_text(CV_HEADER + clip(lang, f"{items[0][0]}-test", *items[0][1:]),
                                              encoding="utf-8")
    return root


def fleurs_tree(root):
    items = {"cmn_hans_cn": [("1001", "今天下雨了。", "今天 下雨 了"), ("1002", "我喜欢猫", "我 喜欢 猫")],
             "yue_hant_hk": [("1001", "今日落雨。", "今日 落雨"), ("1001", "今日落雨。", "今日 落雨"),
                             ("1003", "！", "")]}
    for lang, rows in items.items():
        for split in ("train", "dev", "test"):
            lines = []
            for k, (pid, raw, norm) in enumerate(rows if split == "test" else rows[:1]):
                name = f"{lang[:3]}{split}{k}.wav"
                write_tone(root / lang / split / name, 1.0 + k * 0.5)
                lines.append(f"{pid}\t{name}\t{raw}\t{norm}\tx\t{int((1.0 + k * 0.5) * 16000)}\tFEMALE\n")
            (root / "metadata" / lang).mkdir(parents=True, exist_ok=True)
            (root / "metadata" / lang / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    return root


def yubao_tree(root, with_mp4=False):
    (root).mkdir(parents=True)
    (root / "sites.yaml").write_text("wuu:\n  - 上海_市区_杨浦区\ngan:\n  - 江西_吉安_万安\n  - 江西_宜春_奉新\n"
                                     "min:\n  - 福建_厦门_思明\n", encoding="utf-8")
    for site_id, (name, group) in YUBAO_SITES.items():
        n = 2 if site_id == "18E40" else 3
        sentences = {}
        for k in range(1, n + 1):
            utt = f"{site_id}mb01yf{k:04d}"
            transcript = {1: "我去。/我走。", 2: "廣東話好聽", 3: "食飯未"}[k]
            sentences[utt] = {"transcript": transcript, "translation": "普通话翻译"}
            write_tone(root / name / f"{utt}.wav", 1.0 + 0.1 * k)
        (root / f"{site_id}.json").write_text(json.dumps({"site": name, "subgrouping": group, "sentences": sentences},
                                                         ensure_ascii=False), encoding="utf-8")
    (root / "上海_市区_杨浦区" / "04G96mb01yf0003.wav").write_bytes(b"not audio")
    if with_mp4:
        wav = root / "江西_吉安_万安" / "18E38mb01yf0002.wav"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), str(wav.with_suffix(".mp4"))],
                       check=True)
        wav.unlink()
    return root


def hokkien_tree(root):
    root.mkdir()
    (root / "sentences.tsv").write_text(
        "id\taudio\thokkien_hanzi\thokkien_tailo\tmandarin\tduration_s\tmandarin_audio\n"
        "s001\ts001.flac\t祝恁一路平安。\tTsiok lín\t祝福你們一路平安。\t1.0\tmandarin_tts/m001.flac\n"
        "s002\ts002.flac\t伊來矣。\tI lâi\t\t1.0\t\n", encoding="utf-8")
    (root / "words.tsv").write_text("id\taudio\thanzi\ttailo\tduration_s\nw001\tw001.flac\t一路\ttsi̍t-lōo\t0.5\n",
                                    encoding="utf-8")
    for name, sec in [("s001.flac", 1.0), ("s002.flac", 1.1), ("w001.flac", 0.5), ("mandarin_tts/m001.flac", 0.9)]:
        write_tone(root / name, sec)
    return root


def mdcc_tree(root):
    (root / "text").mkdir(parents=True, exist_ok=True)
    for part in ("train", "valid", "test"):
        # Each split its own recordings, as in MDCC: an utterance in two splits would be a leak.
        lines = ["audio_path,text_path,gender,duration"]
        rows = [("我哋今日去街。", 16000), ("佢唔係好鍾意", 44100)]
        for i, (text, sr) in enumerate(rows if part == "train" else rows[:1]):
            name = f"{part}_utt{i}"
            write_tone(root / f"audio/{name}.wav", 1.0 + i, sr=sr)
            (root / f"text/{name}.txt").write_text(text, encoding="utf-8")
            lines.append(f"./audio/{name}.wav,text/{name}.txt,F,{1.0 + i}")
        (root / f"cnt_asr_{part}_metadata.csv").write_text("\n".join(lines) + "\n")
    return root


GOO_GI_ROWS = {  # id -> text per variety (g is the Mandarin translation)
    "g": ["我最喜歡去夜市吃東西。", "晚餐準備好了。", "開車前要繫安全帶。", "請別拿剪刀玩。", "媽媽喜歡穿高跟鞋。", "趁熱，快吃吧！"],
    "m": ["我上愛去夜市仔食物件。", "暗頓攢好囉！", "我有足濟領[衣甲]仔。", "請毋通提鉸刀耍。", "阿母愛穿懸踏鞋。", "趁燒，緊食！"],
    "c": ["[亻厓]最好去夜市仔食東西。", "暗餐（夜餐）準備好咧。", "駛車以前愛[糸日羽]安全帶。", "請[勿愛]擎剪刀耍[口口口]。",
          "阿姆好著高[月爭]鞋。", "趕燒，遽食！"],
}


def goo_gi_tree(root):
    """Three varieties x six sentences in goo-gi's layout (44.1 kHz MP3); g 002 has no audio and
    m 005's file is truncated, so its header promises 1.5 s but it decodes shorter."""
    for code, texts in GOO_GI_ROWS.items():
        lines = []
        for k, text in enumerate(texts, 1):
            sid = f"{k:03d}"
            lines.append(f"{sid},{code}_files,{sid}.mp3,{text}\n")
            if (code, sid) != ("g", "002"):
                write_tone(root / "mp3" / f"{code}_files" / f"{sid}.mp3", 0.6 + 0.1 * k, sr=44100, freq=300 + 50 * k)
        (root / "utf8_xml").mkdir(parents=True, exist_ok=True)
        (root / "utf8_xml" / f"{code}.xml.csv").write_text("".join(lines), encoding="utf-8")
    truncate_mp3(root / "mp3/m_files/005.mp3")
    return root


def truncate_mp3(path):
    """Keep the first half of an MP3's bytes: the Xing header still gives the full length."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def tag_mp3_with_bad_comment(path):
    """Prepend an ID3v2.3 tag whose COMM frame holds a language but no description terminator and no
    text: libmpg123 then prints ``id3.c:process_comment(): error: No comment text / valid description?``
    to stderr on every open, as it does for many real-world MP3s (the audio itself is intact)."""
    data = b"\x00eng"                                               # encoding, language, nothing more
    frame = b"COMM" + len(data).to_bytes(4, "big") + b"\x00\x00" + data
    size = bytes((len(frame) >> shift) & 0x7F for shift in (21, 14, 7, 0))   # syncsafe
    path.write_bytes(b"ID3\x03\x00\x00" + size + frame + path.read_bytes())
    return path


def lan_lai_tree(root):
    """lan-lai's layout: 3-1.csv (Imtong) and 3-2.csv (ImTong); one sentence is also a tw-hokkien
    sentence (hokkien_tree), one audio file is missing, one is truncated."""
    rows = {"3-1": [("祝恁一路平安。", "Tsiok lín it-lōo pîng-an.", "祝你們一路平安。", "0301_01_01_03.mp3"),
                    ("我伨你。", "Guá thīn--lí.", "我支持你。", "0301_01_02_03.mp3"),
                    ("伊足[禾黑]。", "I tsiok bái.", "他很醜。", "0301_01_03_03.mp3")],
            "3-2": [("這曷著講？", "Tse a̍h-tio̍h kóng?", "這還用說？", "0302_01_01_03.mp3"),
                    ("代誌好勢矣未？", "Tāi-tsì hó-sè--ah--buē?", "事情順利了嗎？", "0302_01_02_03.mp3")]}
    for name, items in rows.items():
        column = "Imtong" if name == "3-1" else "ImTong"
        lines = [f"Iah,Tsiunn,Ho,Hanji,Lomaji,Huagi,{column}\n"]
        for k, (hanji, lomaji, huagi, audio) in enumerate(items, 1):
            lines.append(f"3,一人際,{k},{hanji},{lomaji},{huagi},{audio}\n")
            if audio != "0301_01_02_03.mp3":
                write_tone(root / "mp3/03" / f"0{name[-1]}" / audio, 1.5, sr=44100)
        (root / "csv").mkdir(parents=True, exist_ok=True)
        (root / "csv" / f"{name}.csv").write_text("".join(lines), encoding="utf-8")
    truncate_mp3(root / "mp3/03/02/0302_01_02_03.mp3")
    return root


FOOCHOW_ENTRIES = [  # (_id, audio uuid, field_text); the second IDS has no table entry
    ("56a456b2ef3c8213c800c945", "450b6e48-a25c-4f06-bc47-244fd5a48861", "后九蜀寒拆九寒，后九无寒节节寒。"),
    ("56a456b4ef3c8213c800cb7c", "0a1b2c3d-0000-4000-8000-000000000002", "老罔老，会{⿰扌马}蜀把豆。"),
    ("56a456b4ef3c8213c800cb7e", "0a1b2c3d-0000-4000-8000-000000000003", "{⿱山⿰木木}蜀把豆。"),
    ("56a456b5ef3c8213c800cccc", "0a1b2c3d-0000-4000-8000-000000000004", "荒唐（方肠）拉四角屎。"),
    ("56a456b5ef3c8213c800cd00", "0a1b2c3d-0000-4000-8000-000000000005", "祝恁一路平安。"),
    ("56a456b5ef3c8213c800cd02", "0a1b2c3d-0000-4000-8000-000000000006", "皇帝牛食麦。"),
]


def foochow_idioms_tree(root):
    """foochow-idioms' layout (offline_api/api/s_<id>.json naming <uuid>.wma, www/assets/audio/<uuid>.mp3,
    44.1 kHz mono): a known and an unknown IDS, a parenthesized pun, one sentence that is also a
    tw-hokkien test sentence (hokkien_tree), and the last entry's MP3 missing."""
    api = root / "offline_api/api"
    api.mkdir(parents=True)
    for k, (sid, uuid, text) in enumerate(FOOCHOW_ENTRIES):
        entry = {"field_audio": f"{uuid}.wma", "_id": sid, "field_text": text, "field_annotations": [],
                 "field_tags": ["谚语"]}
        (api / f"s_{sid}.json").write_text(json.dumps(entry, ensure_ascii=False), encoding="utf-8")
        if k < len(FOOCHOW_ENTRIES) - 1:
            write_tone(root / "www/assets/audio" / f"{uuid}.mp3", 0.8 + 0.1 * k, sr=44100, freq=300 + 40 * k)
    (api / "all.json").write_text(json.dumps([{"_id": s, "field_text": t} for s, _, t in FOOCHOW_ENTRIES],
                                             ensure_ascii=False), encoding="utf-8")
    (api / "glyph_%7B%E2%BF%B0%E6%89%8C%E9%A9%AC%7D.json").write_text('{"field_ids": "{⿰扌马}"}', encoding="utf-8")
    return root


def with_ruby(text: str) -> str:
    """kasu100's front text: Private Use Area pronunciation glyphs after each Han character."""
    return "".join(ch + "\ue1f4\ue20b" if is_han(ch) else ch for ch in text)


KASU100_CARDS = [  # (class, front, back, clip, pinyin) in file order; review lessons (00百句) first
    ("一、問好 00百句", "你好", "你好", "k001.mp3", "henˋ hooˆ"),
    ("六、分別 00百句", "剪刀、石頭、布", "剪刀、石頭、布", "k003.mp3", "zienˆ dooˇ sha teuˋ buˆ"),
    ("一、問好 01問好", "你好", "你好", "k001.mp3", "henˋ hooˆ"),
    ("一、問好 01問好", "先生𠢕早", "老師早", "k002.mp3", "sienˇ senˇ ngauˋ zooˆ"),
    ("六、分別 17比較", "剪刀", "剪刀", "k003.mp3", "zienˆ dooˇ"),
    ("六、分別 17比較", "石頭", "石頭", "k004.mp3", "sha teuˋ"),
    ("八、關心 21關心", "祝恁一路平安", "祝你們一路平安", "k005.mp3", "zhiuˆ lin rhidˊ looˆ"),
]


def kasu100_tree(root):
    """kasu100's layout (data.js with the textData template string after another one, kNNN.mp3 at the
    top, 44.1 kHz stereo): PUA ruby glyphs in every front, k001 listed twice with the same text, k003 in
    a review lesson with a longer phrase, k004's MP3 missing, k005 also a tw-hokkien test sentence."""
    root.mkdir(parents=True)
    lines = ["\t".join((cls, with_ruby(front), back, clip, pinyin)) for cls, front, back, clip, pinyin in KASU100_CARDS]
    (root / "data.js").write_text(
        "// 創建 flashcardNameMap ---------------------------------;\nvar mydata = `\n[flashcard]\t[顯示名稱]\n"
        "flashcard1\t希望\n`;\n\n\nconst textData = `\n[class]\t[front]\t[back]\t[audio]\t[pinyin]\n"
        + "\n".join(lines) + "\n`;\n", encoding="utf-8")
    for k in (1, 2, 3, 5):
        write_tone(root / f"k{k:03d}.mp3", 0.5 + 0.2 * k, sr=44100, channels=2, freq=250 + 60 * k)
    return root
