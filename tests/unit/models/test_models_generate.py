"""Sampling: determinism, greedy and top-k, context cropping, the run-folder path and CLI."""

from __future__ import annotations

import json

import pytest
import torch
from cards import card_for
from click.testing import CliRunner

from shoestring.cli.generate_cmd import generate_command
from shoestring.errors import ShoestringError
from shoestring.models.card import TokenizerCard
from shoestring.models.generate import generate, generate_text
from shoestring.models.gpt import GPT, GPTConfig
from shoestring.models.registry import build_model
from shoestring.models.run_folder import save_run
from shoestring.models.tokenizers import train_tokenizer


def model(seed: int = 0, vocab: int = 23) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=vocab))


def test_the_same_generator_state_gives_the_same_tokens():
    m = model()
    start = torch.tensor([[1, 2, 3]])
    a = generate(m, start, 20, temperature=1.0, generator=torch.Generator().manual_seed(5))
    b = generate(m, start, 20, temperature=1.0, generator=torch.Generator().manual_seed(5))
    c = generate(m, start, 20, temperature=1.0, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (1, 23) and torch.equal(a[:, :3], start)


def test_greedy_and_top_1_pick_the_most_likely_token():
    m = model().eval()
    start = torch.tensor([[4, 5]])
    greedy = generate(m, start, 5, temperature=0.0)
    top1 = generate(m, start, 5, temperature=1.0, top_k=1, generator=torch.Generator())
    assert torch.equal(greedy, top1)
    expected = start
    for _ in range(5):
        logits, _ = m(expected)
        expected = torch.cat((expected, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(greedy, expected)


def test_top_k_samples_only_among_the_k_most_likely():
    m = model()
    start = torch.tensor([[1]])
    logits, _ = m.eval()(start)
    allowed = set(torch.topk(logits[0, -1], 3).indices.tolist())
    g = torch.Generator().manual_seed(0)
    seen = {generate(m, start, 1, temperature=5.0, top_k=3, generator=g)[0, -1].item()
            for _ in range(60)}
    assert seen <= allowed and len(seen) > 1


def test_ids_beyond_the_vocabulary_limit_are_never_sampled():
    m = model(vocab=40)
    g = torch.Generator().manual_seed(0)
    out = generate(m, torch.tensor([[1]]), 60, temperature=50.0, generator=g, vocab_limit=10)
    assert out.max() < 10
    free = generate(m, torch.tensor([[1]]), 60, temperature=50.0, generator=g)
    assert free.max() >= 10  # at this temperature the limit is what holds the ids back


def test_context_longer_than_block_size_is_cropped_and_mode_restored():
    m = model()
    m.train()
    out = generate(m, torch.zeros(1, 20, dtype=torch.long), 3, temperature=0.0)
    assert out.shape == (1, 23) and m.training


def test_bad_sampling_settings_are_refused():
    with pytest.raises(ShoestringError, match="temperature must be 0.*top_k must be at least 1"):
        generate(model(), torch.zeros(1, 1, dtype=torch.long), 3, temperature=-1.0, top_k=0)


@pytest.fixture()
def run_dir(tmp_path):
    text = "to be or not to be, that is the question\n"
    tok = train_tokenizer("char", [text])
    m = model(vocab=tok.vocab_size + 8)  # padded beyond the tokenizer, as vocab_size allows
    arch = {"family": "gpt", "name": "gpt", "params": m.config.to_dict()}
    save_run(tmp_path, m, card_for(arch, task="language_modeling",
                                   tokenizer=TokenizerCard(kind="char")), tokenizer=tok)
    return tmp_path


def test_generate_text_reads_the_run_folder_and_is_seeded(run_dir):
    a = generate_text(run_dir, "to be", max_new_tokens=12, seed=3)
    b = generate_text(run_dir, "to be", max_new_tokens=12, seed=3)
    assert a == b and a.prompt_tokens == 5 and a.new_tokens == 12 and len(a.completion) == 12
    assert set(a.completion) <= set("to be or not to be, that is the question\n")


def test_generate_text_errors_name_the_problem(run_dir, tmp_path_factory):
    with pytest.raises(ShoestringError, match="not in the char tokenizer"):
        generate_text(run_dir, "xyz!", max_new_tokens=2)
    with pytest.raises(ShoestringError, match="prompt is empty"):
        generate_text(run_dir, "", max_new_tokens=2)
    (run_dir / "tokenizer.json").unlink()
    with pytest.raises(ShoestringError, match="tokenizer file .* does not exist"):
        generate_text(run_dir, "to", max_new_tokens=2)
    other = tmp_path_factory.mktemp("mlp")
    mlp = {"family": "mlp", "params": {"in_features": 2, "hidden": [], "out_features": 2}}
    save_run(other, build_model(mlp), card_for(mlp))
    with pytest.raises(ShoestringError, match="holds a 'mlp' model"):
        generate_text(other, "to", max_new_tokens=2)


def test_cli_prints_prompt_and_completion(run_dir):
    runner = CliRunner()
    args = [str(run_dir), "--prompt", "to be", "--max-new-tokens", "7", "--seed", "1"]
    out = runner.invoke(generate_command, [*args, "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["new_tokens"] == 7 and result["prompt"] == "to be"
    plain = runner.invoke(generate_command, args)
    assert plain.exit_code == 0
    assert plain.output == "to be" + result["completion"] + "\n"


def test_cli_reports_errors_with_a_hint(tmp_path):
    out = CliRunner().invoke(generate_command, [str(tmp_path), "--prompt", "x"])
    assert out.exit_code == 1
    text = " ".join(out.output.split())  # rich wraps long lines
    assert "Error:" in text and "not a Shoestring run folder" in text and "Hint:" in text


def test_generate_is_part_of_the_shoestring_command():
    from shoestring.cli.main import build_cli

    assert "generate" in build_cli().commands


def test_generate_text_ends_before_a_stop_sequence(run_dir):
    full = generate_text(run_dir, "to be", max_new_tokens=12, seed=3, top_p=0.9)
    stop = full.completion[4:6]
    cut = generate_text(run_dir, "to be", max_new_tokens=12, seed=3, top_p=0.9, stop=[stop])
    assert cut.finish_reason == "stop" and full.finish_reason == "length"
    assert cut.completion == full.completion[:full.completion.find(stop)]
    assert cut.new_tokens == len(cut.completion) + len(stop)  # char tokens: one per character
    with pytest.raises(ShoestringError, match="stop takes 1 to 4 non-empty"):
        generate_text(run_dir, "to be", stop=["a", "b", "c", "d", "e"])
