"""Issue #23 item 2: MTEB runs on the student, offline, on a tiny local STS task: through
`for_mteb(Encoder)` and through the sentence-transformers export (which MTEB wraps itself), with
MTEB's own evaluator giving the Spearman correlation we compute by hand."""

from __future__ import annotations

import numpy as np
import pytest

mteb = pytest.importorskip("mteb")

from distill.cli import main  # noqa: E402
from distill.encoder import Encoder  # noqa: E402
from distill.export.mteb import for_mteb  # noqa: E402
from tests.export.conftest import write_export  # noqa: E402

S1 = ["a cat sits on the mat", "the dog runs in the park", "bread is baked in an oven", "rain falls all day",
      "music plays loudly", "a car drives down the road", "the market opens at nine"]
S2 = ["a cat is sitting on a mat", "a dog is running outside", "the oven bakes bread", "it rains the whole day",
      "a song is playing", "stocks fell sharply", "a child reads a book"]
SCORES = [5.0, 4.5, 4.0, 4.2, 3.0, 0.5, 0.0]


def tiny_task():
    from datasets import Dataset
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata

    class TinyLocalSTS(AbsTaskSTS):
        min_score, max_score = 0, 5
        metadata = TaskMetadata(
            name="TinyLocalSTS", dataset={"path": "local/tiny-sts", "revision": "1"},
            description="Seven sentence pairs, built in the test.", reference=None, type="STS", category="t2t",
            modalities=["text"], eval_splits=["test"], eval_langs=["eng-Latn"], main_score="cosine_spearman",
            date=("2026-01-01", "2026-01-02"), domains=["Written"], task_subtypes=[], license="apache-2.0",
            annotations_creators="derived", dialect=[], sample_creation="created", bibtex_citation="")

        def load_data(self, **kwargs):  # no hub: the data is here
            self.dataset = {"default": {"test": Dataset.from_dict({"sentence1": S1, "sentence2": S2,
                                                                   "score": SCORES})}}
            self.data_loaded = True

    return TinyLocalSTS()


def by_hand(enc: Encoder) -> float:
    from scipy.stats import spearmanr

    a, b = enc.encode(S1), enc.encode(S2)
    return float(spearmanr((a * b).sum(1), SCORES).statistic)


@pytest.mark.slow
def test_mteb_evaluates_the_encoder_and_the_sentence_transformers_export(tiny_bert, tmp_path, monkeypatch):
    lattice = True  # the custom module: the lattice-off export is plain sentence-transformers modules
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MTEB_CACHE", str(tmp_path / "mteb"))
    run = write_export(tiny_bert, tmp_path / "run" / "student", lattice=lattice, seed=3).parent
    enc = Encoder.from_pretrained(run)
    want = by_hand(enc)
    res = mteb.evaluate(for_mteb(enc), tiny_task(), cache=None, show_progress_bar=False)
    score = res.task_results[0].scores["test"][0]
    assert score["cosine_spearman"] == pytest.approx(want, abs=1e-6)
    assert np.isfinite(score["main_score"])

    from sentence_transformers import SentenceTransformer

    assert main(["export", str(run), "--format", "sentence-transformers", "--output", str(tmp_path / "st")]) == 0
    st = SentenceTransformer(str(tmp_path / "st"), device="cpu", trust_remote_code=lattice)
    res = mteb.evaluate(st, tiny_task(), cache=None, show_progress_bar=False)
    assert res.task_results[0].scores["test"][0]["cosine_spearman"] == pytest.approx(want, abs=1e-6)
