"""Measure Finnish normalisers inside the real coder: accuracy on the coded titles, index build time, latency.

Not part of the project's environment (the candidates are not dependencies). To reproduce::

    python3 -m pip install --target /tmp/normalisers simplemma==2.0.0 pyvoikko==0.6 kfst==4.3.3 kfst-rs==1.0.1 \
        libvoikko==4.3
    apt-get install -y libvoikko1 voikko-fi          # libvoikko's C library and Debian's Finnish dictionary
    PYTHONPATH=/tmp/normalisers uv run python scripts/compare_normalisers.py > normalisers.json

Each variant replaces only the Finnish stemmer of ``features.coding.text.Normaliser`` (English stays Snowball),
so the rest of the coder (compound splitting, TF-IDF spaces, profiles, weights) is the same for all.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any


def _finnish_stemmer(name: str) -> Callable[[str], str]:
    if name == "none":
        return lambda w: w
    if name == "snowball":
        import snowballstemmer

        fi = snowballstemmer.stemmer("finnish")
        return lambda w: str(fi.stemWord(w))
    if name == "simplemma":
        import simplemma

        return lambda w: str(simplemma.lemmatize(w, lang="fi")).lower()
    if name == "libvoikko":
        import libvoikko

        voikko = libvoikko.Voikko("fi")

        def lemma(w: str) -> str:
            analyses = voikko.analyze(w)
            return str(analyses[0]["BASEFORM"]).lower() if analyses else w

        return lemma
    if name == "pyvoikko":
        import pyvoikko

        def lemma_py(w: str) -> str:
            analyses = pyvoikko.analyse(w)
            return str(analyses[0].BASEFORM).lower() if analyses else w

        return lemma_py
    raise ValueError(name)


def measure(name: str) -> dict[str, Any]:
    """Accuracy, build time, latency and memory of the coder with one Finnish normaliser."""
    from features.coding import Coder
    from features.coding import text as coding_text
    from features.taxonomy import default_taxonomy
    from training import coding_eval

    tax = default_taxonomy()
    tax.occupation_alt_labels(tax.occupation_uris[0])
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    finnish = _finnish_stemmer(name)
    finnish("lähihoitajaksi")
    load_s = time.perf_counter() - t0
    rss_lemmatiser_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1000
    cache: dict[str, str] = {}

    def stem(self: Any, word: str, lang: str = "fi") -> str:
        if lang != "fi":
            return str(self._en.stemWord(word))
        hit = cache.get(word)
        if hit is None:
            hit = cache[word] = finnish(word)
        return hit

    coding_text.Normaliser.stem = stem  # type: ignore[method-assign]
    coder = Coder(tax)
    table = coding_eval.accuracy_table(lambda t: coder.suggest(t).occupations, tax)
    cache.clear()  # latency with a cold word cache: the worst case of a new text
    titles = [i.title for i in coding_eval.load_coded(coding_eval.HELSINKI)]
    lat = coding_eval.latency(coder, coding_eval.descriptions(tax, titles))
    keep = ("occupation_top1", "occupation_top5", "isco2_top1")
    return {
        "normaliser": name,
        "load_seconds": round(load_s, 2),
        "lemmatiser_rss_mb": round(rss_lemmatiser_mb, 1),
        "index_build_seconds": round(coder.build_seconds, 2),
        "latency_p50_ms": round(lat["p50_ms"], 1),
        "latency_p99_ms": round(lat["p99_ms"], 1),
        **{f"{part}.{k}": round(table[part][k], 3) for part in ("helsinki_fi", "extra_fi") for k in keep},
    }


if __name__ == "__main__":
    import subprocess

    names = sys.argv[1:] or ["none", "snowball", "simplemma", "libvoikko", "pyvoikko"]
    if len(names) == 1:
        print(json.dumps(measure(names[0])))
    else:  # one process per variant, so load time and memory are each variant's own
        rows = []
        for n in names:
            out = subprocess.run([sys.executable, __file__, n], capture_output=True, text=True, check=False)  # noqa: S603
            rows.append(
                json.loads(out.stdout) if out.returncode == 0 else {"normaliser": n, "error": out.stderr[-300:]}
            )
        print(json.dumps(rows, indent=1))
