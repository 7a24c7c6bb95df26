"""Text streams and learning at test time (components/text/): the built-in corpus and its
one-line errors, the byte LM, and the prequential protocol's promise that a segment is
scored before any learner learns from it."""

from __future__ import annotations

import copy

import pytest
import torch

from components.errors import StreamError
from components.text.corpus import Document, build_windows
from components.text.fast import DynamicEval, FastLearner, Static, TTTLora, bits_per_byte, prequential
from components.text.lm import ByteLM, as_tokens, pretrain_lm


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small corpus of two folders: window 0 from `a/`, window 1 from `b/`."""
    root = tmp_path_factory.mktemp("corpus")
    for folder, word in (("a", "alpha"), ("b", "beta")):
        (root / folder).mkdir()
        for i in range(12):
            (root / folder / f"doc{i}.txt").write_text(f"{word} {i} " * 60)
    return root


def test_windows_hold_documents_by_folder_with_held_out_documents_chosen_by_name(corpus):
    windows = build_windows((("a", "a/*.txt"), ("b", "b/*.txt")), corpus, test_share=0.3, seed=1)
    assert [w.name for w in windows] == ["a", "b"]
    for window in windows:
        names = {d.name for d in window.train} | {d.name for d in window.test}
        assert len(names) == 12 and not {d.name for d in window.train} & {d.name for d in window.test}
        assert window.test and window.train
    again = build_windows((("b", "b/*.txt"), ("a", "a/*.txt")), corpus, test_share=0.3, seed=1)
    assert {d.name for d in again[1].test} == {d.name for d in windows[0].test}  # by name, not by position


def test_the_default_corpus_is_the_standard_library_and_its_prose():
    windows = build_windows(max_test_docs=2, max_doc_bytes=512)
    assert [w.name for w in windows] == ["stdlib-modules", "asyncio", "email", "prose"]
    assert all(len(d.data) <= 512 for w in windows for d in w.test)
    assert windows[3].test[0].name.startswith("topics/") and b"def " in windows[1].train_bytes


@pytest.mark.parametrize("windows, share, expected", [
    ((("a", "a/*.txt"), ("none", "c/*.txt")), 0.3, "window 1 (none) has no document of at least 256 bytes"),
    ((("a", "a/*.txt"),), 0.0, "window 0 (a) has no held-out document"),
])
def test_a_window_without_documents_or_held_out_ones_is_one_line(corpus, windows, share, expected):
    with pytest.raises(StreamError) as error:
        build_windows(windows, corpus, test_share=share)
    assert expected in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("text", ["", "tiny"], ids=["empty", "too-short"])
def test_a_document_of_your_corpus_shorter_than_a_segment_is_one_line_naming_it(tmp_path, text):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "short.txt").write_text(text)
    for i in range(6):
        (tmp_path / "w" / f"long{i}.txt").write_text("x" * 400)
    with pytest.raises(StreamError, match=rf"w/short\.txt: {len(text)} bytes, shorter than one segment \(256 bytes"):
        build_windows((("w", "w/*.txt"),), tmp_path, test_share=0.5, seed=3)


def test_the_built_in_corpus_leaves_out_files_shorter_than_a_segment():
    (window,) = build_windows((("asyncio", "asyncio/*.py"),), test_share=0.2, min_bytes=256)
    documents = window.train + window.test
    assert "asyncio/log.py" not in {d.name for d in documents}  # 124 bytes in CPython 3.11
    assert len(documents) > 20 and min(len(d.data) for d in documents) >= 256


class Spy(FastLearner):
    """Records, for every segment scored, what had been learned by then."""

    name = "spy"

    def __init__(self, slow: torch.nn.Module) -> None:
        super().__init__(slow)
        self.learned: list[bytes] = []
        self.seen_when_scored: list[list[bytes]] = []
        self.documents = 0

    @property
    def model(self) -> torch.nn.Module:
        self.seen_when_scored.append(list(self.learned))
        return self.slow

    def begin_document(self) -> None:
        self.documents += 1

    def learn(self, context, segment, state) -> None:  # noqa: ANN001
        self.learned.append(bytes(segment.tolist()))


DOCUMENT = Document("d", bytes(range(200)) * 3)  # 600 bytes: segments of 128, the last one 88
SEGMENTS = [DOCUMENT.data[i: i + 128] for i in range(0, 600, 128)]


def _order_violations(protocol) -> list[int]:  # noqa: ANN001
    """Segments scored by a model that had already learned from them (or from later ones)."""
    torch.manual_seed(0)
    spy = Spy(ByteLM(width=8, hidden=16))
    protocol(spy, [DOCUMENT], segment=128)
    assert spy.learned == SEGMENTS and spy.documents == 1
    return [k for k, seen in enumerate(spy.seen_when_scored) if seen != SEGMENTS[:k]]


def _learns_first(learner, documents, segment):  # noqa: ANN001
    """A mutant of the protocol: it learns from each segment, then scores it."""
    for document in documents:
        learner.begin_document()
        tokens = torch.tensor(list(document.data))
        for start in range(0, len(tokens), segment):
            piece = tokens[start: start + segment]
            learner.learn(torch.zeros(1, dtype=torch.long), piece, None)
            learner.model  # noqa: B018 (scores with what it just learned)


def test_prequential_scores_each_segment_before_anything_learns_from_it():
    assert _order_violations(prequential) == []
    assert _order_violations(_learns_first) == [0, 1, 2, 3, 4]  # the check catches a protocol that peeks
    (score,) = prequential(Static(ByteLM(width=8, hidden=16)), [DOCUMENT], segment=128)
    assert score.bytes == 600 and len(score.segment_bpb) == 5


def test_a_text_unit_gives_the_same_numbers_twice():
    from components.text.corpus import TextWindow
    from components.text.protocol import build_slow, run_text_unit

    torch.manual_seed(0)
    slow = build_slow(16, 32)
    text = [Document(f"d{i}", (f"window text {i} " * 30).encode()) for i in range(4)]
    windows = [TextWindow(k, f"w{k}", text[:2], text[2:]) for k in range(3)]
    state = copy.deepcopy(slow.state_dict())
    runs = []
    for _ in range(2):
        for learner in ({"learner": "dynamic_eval", "steps": 1}, {"learner": "ttt_lora", "rank": 2}):
            model = build_slow(16, 32, state)
            result = run_text_unit(model, windows, "e", learner, seed=3, segment=32, share=0.5, consolidate_bytes=128)
            runs.append((result.matrix.tolist(), result.metrics))
    assert runs[:2] == runs[2:]
    assert runs[0][0][0] != runs[0][0][-1]  # consolidation changed the slow model


def test_dynamic_eval_that_decays_all_the_way_back_scores_as_the_static_model():
    torch.manual_seed(0)
    slow = ByteLM(width=16, hidden=32)
    documents = [Document(f"d{i}", (b"hello world, " * 40)[i:]) for i in range(2)]
    static = bits_per_byte(prequential(Static(slow), documents, 64))
    back = bits_per_byte(prequential(DynamicEval(slow, lr=0.1, decay=1.0), documents, 64))
    learning = bits_per_byte(prequential(DynamicEval(slow, lr=0.1, decay=0.0), documents, 64))
    assert back == pytest.approx(static, abs=1e-6)
    assert learning < static  # a repetitive text is learned while it is read


def test_one_step_of_the_recurrence_from_the_states_it_passed_through_is_the_recurrence():
    """`backprop: step` recomputes each position's GRU output from the state before it,
    batched; with the scoring pass's states it must be the GRU itself, to float precision."""
    torch.manual_seed(0)
    model = ByteLM(width=16, hidden=32)
    tokens, start = torch.randint(0, 256, (1, 50)), torch.randn(1, 1, 32)
    h, _ = model.recurrent(tokens, start)
    previous = torch.cat([start.transpose(0, 1), h[:, :-1]], dim=1).squeeze(0)
    assert torch.allclose(model.one_step(tokens.squeeze(0), previous), h.squeeze(0), atol=1e-6)


def test_dynamic_eval_through_one_step_learns_every_weight_from_what_it_just_scored():
    torch.manual_seed(0)
    slow = ByteLM(width=16, hidden=32)
    before = copy.deepcopy(slow.state_dict())
    documents = [Document(f"d{i}", (b"one step at a time. " * 30)[i:]) for i in range(2)]
    static = bits_per_byte(prequential(Static(slow), documents, 64))
    learner = DynamicEval(slow, lr=0.3, decay=0.0, steps=2, backprop="step")
    learning = bits_per_byte(prequential(learner, documents, 64))
    assert learning < 0.9 * static  # a repetitive text is learned while it is read
    moved = {n for n, p in learner.fast.named_parameters() if not torch.equal(p, before[n])}
    assert moved == set(before)  # the GRU's own weights too, not only the layers after it
    assert all(torch.equal(p, before[n]) for n, p in slow.state_dict().items())
    back = bits_per_byte(prequential(DynamicEval(slow, lr=0.3, decay=1.0, backprop="step"), documents, 64))
    assert back == pytest.approx(static, abs=1e-6)
    with pytest.raises(RuntimeError, match="just scored"):  # nothing scored: nothing to learn from
        DynamicEval(slow, backprop="step").learn(torch.zeros(1, dtype=torch.long), torch.arange(64), None)


def test_ttt_lora_leaves_the_slow_weights_alone_and_resets_per_document():
    torch.manual_seed(0)
    slow = ByteLM(width=16, hidden=32)
    before = copy.deepcopy(slow.state_dict())
    documents = [Document("d", b"abcabcabd " * 60)] * 2
    learner = TTTLora(slow, lr=0.01, rank=2, reset="document")
    first, second = prequential(learner, documents, 64)
    assert all(torch.equal(before[k], v) for k, v in slow.state_dict().items())
    assert first.bits == pytest.approx(second.bits, rel=1e-6)  # the same document from a fresh adapter
    assert learner.state_bytes() > 0


def test_pretraining_lowers_the_loss_on_its_text():
    torch.manual_seed(0)
    model = ByteLM(width=16, hidden=32)
    text = b"the quick brown fox jumps over the lazy dog. " * 50
    losses = pretrain_lm(model, text, steps=100, batch=8, length=32, generator=torch.Generator().manual_seed(0))
    assert losses[-1] < losses[0] * 0.8
    assert as_tokens(b"\x00\xff").tolist() == [0, 255]


def _text_project(root, corpus_files: dict[str, list[str]]) -> None:
    from tests.conftest import tiny_params, write_params

    for window, texts in corpus_files.items():
        (root / "data" / "raw" / "text" / window).mkdir(parents=True)
        for i, text in enumerate(texts):
            (root / "data" / "raw" / "text" / window / f"doc{i}.txt").write_text(text)
    params = tiny_params()
    params["text"] = {
        "name": "tiny-text", "corpus": "files", "seeds": [0, 1], "test_share": 0.3, "segment": 32, "doc_bytes": 256,
        "width": 16, "hidden": 32, "pretrain_steps": 30, "consolidate_bytes": 256,
        "windows": [{"name": w, "glob": f"text/{w}/*.txt"} for w in corpus_files],
        "methods": {"static": {}, "dynamic_eval": {"lr": 0.3, "steps": 1}, "lora4": {"learner": "ttt_lora", "rank": 4},
                    "memory": {"learner": "neural_memory"}}, "replay_bytes": 128,
    }
    write_params(root, params)


def _corpus(word: str) -> list[str]:
    return [f"{word} number {i}: " + f"{word} says {i * 7 % 13} " * 30 for i in range(10)]


def test_the_text_stage_compares_learners_in_bits_per_byte_through_prefect_and_mlflow(prefect_api_url, mlflow_store,
                                                                                      tmp_path, monkeypatch):
    """Your own corpus (windows by folder under data/raw/), every learner x 2 seeds: per-unit
    files, the table best (lowest) bpb_fast first, DVC metrics, figures, MLflow runs, and the
    registry's champion served."""
    import json

    from mlflow.tracking import MlflowClient

    from flows.text import text_flow

    _text_project(tmp_path, {"w0": _corpus("alpha"), "w1": _corpus("beta"), "w2": _corpus("gamma")})
    result = text_flow(root=str(tmp_path))
    out = tmp_path / "results" / "text"
    order = result["order"]
    fast = [result["summaries"][e]["mean"]["bpb_fast"] for e in order]
    assert fast == sorted(fast) and set(order) == {"static", "dynamic_eval", "lora4", "memory"}
    static = result["summaries"]["static"]["mean"]
    assert static["gain"] == 0 and static["forgetting_bpb"] == 0  # the static model learns nothing
    for learner in ("dynamic_eval", "memory"):  # repetitive text is learned
        assert result["summaries"][learner]["mean"]["bpb_fast"] < static["bpb_fast"], learner
    # timings swing with load: in the run record and MLflow, never in what DVC hashes
    unit = json.loads((out / "methods" / "memory" / "seed1" / "metrics.json").read_text())
    assert "ms_per_segment" not in json.dumps(unit)
    record = json.loads((tmp_path / ".slowfast" / "runs" / "text" / "tiny-text" / "memory" / "seed1.json").read_text())
    assert [w["window"] for w in record["timings"]] == [1, 2] and record["timings"][0]["learn_ms_per_segment"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [w["name"] for w in manifest["windows"]] == ["w0", "w1", "w2"] and len(manifest["content_hash"]) == 64
    assert {p.stem for p in (out / "metrics").iterdir()} == set(order)
    assert set(json.loads((out / "metrics" / "lora4.json").read_text())) >= {"bpb_fast", "gain", "forgetting_bpb"}
    assert (out / "methods" / "lora4" / "seed1" / "bpb_matrix.csv").is_file()
    assert {p.name for p in (out / "figures").iterdir()} >= {"bpb_by_position.png", "bpb_matrix_lora4.png"}
    client = MlflowClient(mlflow_store)
    runs = client.search_runs([client.get_experiment_by_name("tiny-text").experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(
        ["comparison", *(f"{e}-seed{s}" for e in order for s in (0, 1))])
    assert all(r.info.status == "FINISHED" for r in runs)
    # the registry: champion = lowest bpb_fast, challenger next, each the entry's seed-0 model
    crowned = {a: client.get_model_version_by_alias("slowfast-tiny-text", a) for a in ("champion", "challenger")}
    assert [crowned[a].tags["method"] for a in ("champion", "challenger")] == order[:2] == result["champions"]
    assert crowned["champion"].tags["seed"] == "0" and "bpb_fast" in crowned["champion"].description
    _the_champion_serves_documents_read_with_its_fast_learner(monkeypatch)


def _the_champion_serves_documents_read_with_its_fast_learner(monkeypatch) -> None:
    """Loaded from the registry with pickle refused: each document is read prequentially by
    the entry's fast learner on the consolidated slow model, independently of the others."""
    import mlflow
    import pandas as pd

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    served = mlflow.pyfunc.load_model("models:/slowfast-tiny-text@champion")
    document = _corpus("gamma")[3]
    rows = served.predict(pd.DataFrame({"text": [document, "x", document]}))
    assert list(rows.columns) == ["bytes", "bpb_static", "bpb_fast", "gain"] and len(rows) == 3
    assert rows.iloc[0].tolist() == rows.iloc[2].tolist()  # a document's answer does not depend on the others
    assert rows["bytes"].tolist() == [len(document), 1, len(document)]
    assert rows.loc[0, "bpb_fast"] < rows.loc[0, "bpb_static"]  # it learned while reading the repetitive text
    with pytest.raises(Exception, match="row 1: empty text"):
        served.predict(pd.DataFrame({"text": [document, ""]}))


def test_a_text_window_without_held_out_documents_is_one_line_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    _text_project(tmp_path, {"w0": _corpus("alpha"), "w1": []})
    done = subprocess.run([sys.executable, "-m", "flows.text", "--root", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "window 1 (w1) has no document of at least 32 bytes" in done.stderr  # its glob matches nothing
    assert not (tmp_path / "results").exists() and not (tmp_path / "models").exists()


def test_a_corpus_file_that_links_outside_its_folder_is_refused_unread(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the corpus " * 40)
    (tmp_path / "c").mkdir()
    for i in range(6):
        (tmp_path / "c" / f"doc{i}.txt").write_text("fine text " * 40)
    (tmp_path / "c" / "link.txt").symlink_to(secret)
    with pytest.raises(StreamError, match=r"link\.txt: leads outside .* copy the file into"):
        build_windows((("c", "*.txt"),), tmp_path / "c", test_share=0.5)


def test_the_memory_write_is_the_gradient_step_with_momentum_and_forgetting_it_is_defined_as():
    from components.text.memory import memory_step

    memory, momentum = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])  # width 1, hidden 2
    keys, values = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[3.0], [1.0]])
    new_memory, new_momentum = memory_step(memory, momentum, keys, values, lr=0.1, momentum=0.5, forget=0.25)
    # recall errors M k - v: [1 - 3, 0 - 1] = [-2, -1]; gradient (1/2)(-2 [1, 0] + -1 [0, 2]) = [-1, -1];
    # the keys' energy (1 + 4) / 2 = 2.5 divides the step
    assert new_momentum.flatten().tolist() == pytest.approx([0.5 * 0.5 + 0.1 / 2.5, 0.5 * 0.5 + 0.1 / 2.5])
    assert new_memory.flatten().tolist() == pytest.approx([0.75 * 1.0 + 0.29, 0.75 * 0.0 + 0.29])
    # ... which is the gradient of the associative recall loss 1/2 mean ||M k - v||^2
    torch.manual_seed(0)
    memory, keys, values = torch.randn(3, 4, requires_grad=True), torch.randn(5, 4), torch.randn(5, 3)
    (0.5 * ((keys @ memory.T - values) ** 2).sum(dim=1).mean()).backward()
    energy = (keys ** 2).sum(dim=1).mean()
    stepped, _ = memory_step(memory.detach(), torch.zeros(3, 4), keys, values, lr=energy.item(), momentum=0.0, forget=0.0)
    assert torch.allclose(stepped, memory.detach() - memory.grad, atol=1e-5)


def test_the_memory_values_are_the_direction_that_lowers_each_next_bytes_loss():
    torch.manual_seed(0)
    slow = ByteLM(width=8, hidden=16)
    inputs, targets = torch.tensor([0, 104, 105]), torch.tensor([104, 105, 33])
    keys, values = slow.keys_and_errors(inputs, targets)
    # read a memory of zeros and differentiate the loss at the memory's output, per position
    memory = torch.zeros(8, 16, requires_grad=True)
    logits, _ = slow(inputs.unsqueeze(0), memory=memory)
    assert torch.allclose(logits, slow(inputs.unsqueeze(0))[0])  # an empty memory changes nothing
    loss = torch.nn.functional.cross_entropy(logits.squeeze(0), targets, reduction="sum")
    (grad,) = torch.autograd.grad(loss, memory)
    assert torch.allclose(-grad, values.T @ keys, atol=1e-5)  # sum_t v_t k_t^T = -dLoss/dM at M = 0


def test_neural_memory_leaves_the_slow_weights_alone_learns_while_reading_and_merges_exactly():
    from components.text.learners import consolidate
    from components.text.memory import NeuralMemory

    torch.manual_seed(0)
    slow = ByteLM(width=16, hidden=32)
    before = copy.deepcopy(slow.state_dict())
    documents = [Document("d", b"abcabcabd " * 60)] * 2
    static = prequential(Static(slow), documents, 64)
    kept = NeuralMemory(slow, lr=0.5, reset="window")
    first, second = prequential(kept, documents, 64)
    assert all(torch.equal(before[k], v) for k, v in slow.state_dict().items())
    assert first.bits < static[0].bits and second.bits < first.bits  # learns, and keeps it across documents
    fresh = NeuralMemory(slow, lr=0.5, reset="document")
    again = prequential(fresh, documents, 64)
    assert again[0].bits == pytest.approx(again[1].bits, rel=1e-6)  # cleared at each document
    tokens = as_tokens(b"abcabcab").unsqueeze(0)
    reading, _ = kept.model(tokens)
    consolidate(slow, kept, share=1.0)  # the memory merged into out_proj: the slow model now reads the same
    assert torch.allclose(slow(tokens)[0], reading, atol=1e-5)
    assert kept.state_bytes() == 2 * 16 * 32 * 4


def test_consolidation_reads_the_window_with_earlier_windows_spread_through_it():
    from components.text.corpus import TextWindow
    from components.text.protocol import consolidation_text

    windows = [TextWindow(k, f"w{k}", [Document(f"t{k}", bytes([65 + k]) * 40)], []) for k in range(3)]
    assert consolidation_text(windows, 2, 16, 0, 4).data == b"C" * 16  # no replay: the window's own start
    mixed = consolidation_text(windows, 2, 16, 16, 4).data
    assert sorted(mixed) == sorted(b"C" * 16 + b"A" * 8 + b"B" * 8)  # an equal share of each earlier window
    assert mixed == b"CCCCAAAACCCCBBBBCCCCAAAACCCCBBBB"  # in chunks, spread evenly, round robin


@pytest.mark.parametrize("make", [lambda slow: DynamicEval(slow, lr=0.1, steps=2, backprop="segment"),
                                  lambda slow: TTTLora(slow, lr=0.01, rank=2, steps=2, reset="window")],
                         ids=["dynamic_eval", "ttt_lora"])
def test_reusing_the_scoring_pass_for_the_first_step_changes_no_number(make):
    """A gradient learner learns from the loss its segment was scored with (one forward
    saved): the same bits as a learner that runs a forward of its own."""
    torch.manual_seed(0)
    slow = ByteLM(width=16, hidden=32)
    documents = [Document(f"d{i}", (b"reuse the graph, " * 30)[i:]) for i in range(2)]
    reusing, recomputing = make(slow), make(slow)
    recomputing.reuses_scoring = False
    assert reusing.reuses_scoring
    first, second = prequential(reusing, documents, 64), prequential(recomputing, documents, 64)
    bpb = [(a, b) for x, y in zip(first, second) for a, b in zip(x.segment_bpb, y.segment_bpb)]
    assert len(bpb) == 16 and all(a == pytest.approx(b, abs=1e-6) for a, b in bpb)
    assert bits_per_byte(first) < bits_per_byte(prequential(Static(slow), documents, 64))  # it did learn


@pytest.mark.parametrize("stage, block, empty, said", [("text", "text", {"methods": {}}, "is empty"),
                                                       ("tune", "tune", {"methods": []}, "is empty"),
                                                       ("fetch", "stream", {"source": "mnist1d"}, "nothing to fetch")])
@pytest.mark.parametrize("how", ["flow", "stage"])
def test_a_stage_with_nothing_to_run_still_writes_every_output_dvc_expects(stage, block, empty, said, how, tmp_path):
    """`text.methods: {}` turns the text stream off, `tune.methods: []` tuning, and a source
    generated offline has nothing to fetch; `dvc repro` must still find each output of the
    stage (it once failed on the missing models/text). As a stage it writes them without
    importing torch, Prefect or MLflow (2-9 s each of a pipeline on 2 cores): here those
    imports fail."""
    import importlib
    import os
    import subprocess
    import sys

    import yaml

    from tests.conftest import REPO, tiny_params, write_params

    params = tiny_params()
    params[block] = {**params.get(block, {}), **empty}
    write_params(tmp_path, params)
    if how == "flow":
        flow = getattr(importlib.import_module(f"flows.{stage}"), f"{stage}_flow")
        assert flow.fn(root=str(tmp_path)) == ({} if stage != "fetch" else said + ": stream.source 'mnist1d' needs no "
                                                                           "files from data/external/")
    else:
        blocked = tmp_path / "blocked"
        for name in ("torch", "prefect", "mlflow"):
            (blocked / name).mkdir(parents=True)
            (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} imported by a stage with nothing to run')")
        done = subprocess.run([sys.executable, "-m", f"flows.{stage}", "--root", str(tmp_path)], cwd=REPO,
                              env=os.environ | {"PYTHONPATH": str(blocked)}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert said in done.stdout
    outs = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["outs"]
    paths = [next(iter(o)) if isinstance(o, dict) else o for o in outs]
    missing = [p for p in paths if not (tmp_path / p).exists()]
    assert paths and not missing, missing


def _tickets(weeks=("2024-02", "2024-01", "2024-03"), per_week=8) -> dict[str, list]:
    rows: dict[str, list] = {"id": [], "week": [], "body": []}
    for week in weeks:
        for i in range(per_week):
            rows["id"].append(f"t{week}-{i}")
            rows["week"].append(week)
            rows["body"].append(f"ticket {i} of week {week}: " + "the printer jams again " * 6)
    return rows


def _table_project(root, rows: dict, name: str = "tickets.parquet", **table) -> None:
    import polars as pl

    from tests.conftest import tiny_params, write_params

    path = root / "data" / "raw" / "text" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(rows)
    frame.write_parquet(path) if name.endswith(".parquet") else frame.write_csv(path)
    params = tiny_params()
    params["text"] = {"corpus": "table", "segment": 32, "test_share": 0.3, "methods": {"static": {}}, "table": {
        "path": f"text/{name}", "text_column": "body", "window_column": "week", "name_column": "id", **table}}
    write_params(root, params)


def _windows(root):
    from components.config import load_params
    from tasks.text import text_windows

    return text_windows(load_params(root / "params.yaml"), str(root))


@pytest.mark.parametrize("name", ["tickets.parquet", "tickets.csv"])
def test_your_table_is_a_text_stream_with_a_window_per_value_of_a_column(tmp_path, name):
    """One document per row, windows in the sorted order of `window_column`'s values, held
    out by the documents' names: the rows' order changes nothing."""
    rows = _tickets()
    _table_project(tmp_path, rows, name)
    windows = _windows(tmp_path)
    assert [w.name for w in windows] == ["2024-01", "2024-02", "2024-03"]
    assert all(d.name.startswith(f"{w.name}/t{w.name}-") for w in windows for d in w.train + w.test)
    assert sum(len(w.train) + len(w.test) for w in windows) == 24 and all(w.test and w.train for w in windows)
    assert windows[0].test[0].data.decode().startswith("ticket")
    shuffled = {k: v[::-1] for k, v in rows.items()}
    _table_project(tmp_path / "shuffled", shuffled, name)
    assert [[d.name for d in w.test] for w in _windows(tmp_path / "shuffled")] == [[d.name for d in w.test]
                                                                                   for w in windows]


@pytest.mark.parametrize("change, table, expected", [
    (lambda r: r.pop("body"), {}, r"tickets\.parquet: no column 'body' \(text\.table\.text_column\); columns: \['id', 'week'\]"),
    (lambda r: r["body"].__setitem__(3, None), {}, r"column 'body' is empty in 1 row\(s\), the first row 3"),
    (lambda r: r["body"].__setitem__(0, ""), {}, r"\(week = 2024-02\): 2024-02/t2024-02-0: 0 bytes, shorter than one segment"),
    (lambda r: r["id"].__setitem__(1, r["id"][0]), {}, r"column 'id' names 't2024-02-0' more than once"),
    (lambda r: r.__setitem__("body", list(range(24))), {}, r"column 'body' holds Int64, expected text"),
    (lambda r: r["week"].__setitem__(5, "../up"), {}, r"column 'week' holds '\.\./up', not a plain window name"),
    (lambda r: r.__setitem__("week", ["2024-01"] * 24), {}, r"column 'week' has 1 value\(s\); need at least two windows"),
    (lambda r: None, {"path": "text/missing.parquet"}, r"missing\.parquet: not found \(text\.table\.path\)"),
], ids=["no-column", "null-text", "empty-text", "duplicate-name", "not-text", "bad-window", "one-window", "no-file"])
def test_a_bad_table_corpus_is_one_line_naming_file_and_column(tmp_path, change, table, expected):
    from components.errors import StreamError

    rows = _tickets()
    change(rows)
    _table_project(tmp_path, rows, **table)
    with pytest.raises(StreamError, match=expected):
        _windows(tmp_path)


def test_a_table_corpus_that_links_outside_data_raw_is_refused_unread(tmp_path):
    from components.errors import StreamError

    _table_project(tmp_path / "elsewhere", _tickets())
    _table_project(tmp_path, _tickets(), "link.parquet")
    link = tmp_path / "data" / "raw" / "text" / "link.parquet"
    link.unlink()
    link.symlink_to(tmp_path / "elsewhere" / "data" / "raw" / "text" / "tickets.parquet")
    with pytest.raises(StreamError, match="leads outside"):
        _windows(tmp_path)


def test_a_bad_table_corpus_stops_the_stage_in_one_line_with_nothing_written(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    rows = _tickets()
    rows["body"][3] = None
    _table_project(tmp_path, rows)
    done = subprocess.run([sys.executable, "-m", "flows.text", "--root", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=os.environ | {"PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "tickets.parquet: column 'body' is empty in 1 row(s), the first row 3" in done.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "models").exists()


def test_your_files_cut_into_windows_by_their_order(tmp_path):
    """`corpus: file_order`: the files sorted by path, in consecutive runs of nearly equal count."""
    from components.errors import StreamError
    from tests.conftest import tiny_params, write_params

    folder = tmp_path / "data" / "raw" / "text" / "log"
    folder.mkdir(parents=True)
    for day in range(29):
        (folder / f"day{day:02d}.txt").write_text(f"day {day}: " + "the service restarted " * 8)
    params = tiny_params()
    params["text"] = {"corpus": "file_order", "file_order": {"glob": "text/log/*.txt", "windows": 3}, "segment": 32,
                      "test_share": 0.3, "methods": {"static": {}}}
    write_params(tmp_path, params)
    windows = _windows(tmp_path)
    assert [w.name for w in windows] == ["part0", "part1", "part2"]
    days = [sorted(d.name for d in w.train + w.test) for w in windows]
    assert days == [[f"text/log/day{d:02d}.txt" for d in range(a, b)] for a, b in ((0, 9), (9, 19), (19, 29))]
    params["text"]["file_order"]["windows"] = 30
    write_params(tmp_path, params)
    with pytest.raises(StreamError, match=r"log/\*\.txt: 29 file\(s\) for 30 windows \(text\.file_order\.windows\)"):
        _windows(tmp_path)


@pytest.mark.parametrize("suffix", ["", "-live", "-tuning"])
def test_the_text_stream_cannot_share_a_name_with_the_classification_stream(tmp_path, suffix):
    """Both name an MLflow experiment and a registered model: the comparison of one would
    crown a version of the other."""
    from components.config import load_params
    from components.errors import ParamsError
    from tests.conftest import tiny_params, write_params

    params = tiny_params()
    params["text"] = {"name": params["stream"]["name"] + suffix}
    write_params(tmp_path, params)
    with pytest.raises(ParamsError, match="text.name: .* give the text stream a name of its own"):
        load_params(tmp_path / "params.yaml")
