"""Corpus adapters: ``prepare_<corpus>(corpus_dir, output_dir, ...)`` writing speechalign manifests.

Each module in :data:`ADAPTERS` defines its ``prepare_<corpus>`` function and ``add_cli(subparsers)``
registering ``speechalign prepare <corpus>``.
"""

ADAPTERS = ("kespeech", "mdcc", "commonvoice", "aishell", "fleurs", "yubao", "tw_hokkien", "goo_gi", "lan_lai",
            "foochow_idioms", "kasu100", "synth", "custom", "filter")
