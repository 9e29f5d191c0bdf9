"""How each document's examples run here (see doc_examples.py for the rules).

A document missing from PLANS still runs: every block with its default
treatment. A rule is needed only to scale a block down, give a fragment the
names it assumes, skip what cannot run on this machine (with the reason), or
check its output.
"""

from __future__ import annotations

from doc_examples import DocPlan, Rule

# Language-model runs the documents serve or compress: a few steps on the tiny corpus.
TINY_LM = "shoestring train --model gpt-nano --data text:corpus.txt --tokenizer char " \
          "--batch-size 4 --max-steps 3 --threads 1 --out {out} > /dev/null"
TINY_FMNIST = "shoestring train --model seed-mlp --data fashion-mnist:@FMNIST@ --epochs 1 " \
              "--threads 1 --out {out} > /dev/null"
GPT_FRAGMENT = ("import torch\nfrom shoestring.models.gpt import GPT, GPTConfig\n"
                "model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32, "
                "vocab_size=65))\n")

# docs/finetune.md's Hugging Face folder: a tiny Llama built by transformers (the dev
# extras' oracle) with a byte-level BPE tokenizer.json fitted to the tiny corpus.
TINY_LLAMA_FOLDER = """python - <<'PY'
import torch
import transformers as tf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator([open("corpus.txt").read()], trainers.BpeTrainer(
    vocab_size=300, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
torch.manual_seed(0)
tf.LlamaForCausalLM(tf.LlamaConfig(
    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=32,
    intermediate_size=64, vocab_size=tok.get_vocab_size(), max_position_embeddings=64,
)).save_pretrained("llama-folder")
tok.save("llama-folder/tokenizer.json")
PY
cp docs.jsonl labels.jsonl"""

# docs/audit.md's loan tables: two group columns, a third for the later data, a label.
LOANS = """python - <<'PY'
import random
rng = random.Random(0)
for name in ("loans.csv", "loans-2027.csv"):
    rows = ["income,debt,sex,age_band,region,approved"]
    for _ in range(1000):  # test splits of 200: groups of ~100, enough to judge
        income, debt = rng.gauss(50, 15), rng.gauss(20, 8)
        rows.append(f"{income:.1f},{debt:.1f},{rng.choice('FM')},{rng.choice(['18-34', '35+'])},"
                    f"{rng.choice(['north', 'south'])},{int(income - debt + rng.gauss(0, 8) > 30)}")
    open(name, "w").write("\\n".join(rows) + "\\n")
PY"""

PLANS: dict[str, DocPlan] = {
    "README.md": DocPlan(rules=[
        Rule("make quickstart", skip="the quickstart and the suite themselves: "
             "tests/integration/test_cli_core.py runs the quickstart; CI runs make test"),
        Rule("--optimizer adam --lr 0.001 --seed 0 --out runs/fmnist",
             subs=(("--epochs 10", "--epochs 2"),),
             expect=("test_accuracy",)),
        Rule('name = "seed-mlp"', write="run.toml", subs=(("epochs = 10", "epochs = 1"),)),
        Rule("from shoestring import train, resolve_config",
             subs=(('"epochs": 30', '"epochs": 3'),),
             after="true"),
        Rule("hooks=TrainHooks(loss=distill)",
             subs=(('"hidden": [32]}', '"hidden": [32]}, "train": {"epochs": 1}'),)),
        Rule("--model gpt-nano --data text:corpus.txt",
             subs=(("--max-steps 300", "--max-steps 10"), ("--max-new-tokens 200", "--max-new-tokens 20")),
             after='curl -s "http://127.0.0.1:$PORT/v2/health/ready"'),
        Rule("--nproc 2 --out runs/ddp",
             drop=(("--strategy fsdp", "FSDP2 needs CUDA GPUs"),
                   ("--nnodes 2", "needs two GPU nodes"))),
    ]),
    "docs/audit.md": DocPlan(
        setup="\n".join([LOANS, TINY_FMNIST.format(out="runs/fmnist")]),
        rules=[Rule("shoestring audit runs/fmnist --explain 32 --time-budget 300",
                    subs=(("--explain 32 --time-budget 300", "--explain 4 --time-budget 60"),))]),
    "docs/encryption.md": DocPlan(rules=[
        Rule("--methods dynamic-int8 --key-file team.key",
             subs=(("--methods dynamic-int8",
                    "--methods dynamic-int8 --measure-seconds 0.1 --batch-sizes 1"),),
             after="test -f runs/private-int8/encryption.json"),
        Rule("shoestring eval runs/private --key-file team.key", expect=("test_accuracy",)),
        Rule("python bench/privacy_encryption.py --quick",
             skip="a benchmark: run by hand from the checkout (it measures, it is not a test)"),
    ]),
    "docs/privacy.md": DocPlan(rules=[
        Rule("shoestring audit runs/digits-dp --explain 0",
             after="grep -q 'Differential privacy: epsilon' runs/digits-dp/audit/model_card.md"),
        Rule("--dp epsilon=0,max-grad-norm=-1,noise=2",
             skip="an error shown with its output; tests/integration/test_train_privacy.py "
             "(test_cli_dp_flag_reports_every_bad_key) checks it"),
        Rule("python bench/privacy_utility.py",
             skip="the bench trains five Fashion-MNIST runs (minutes); --quick is its check"),
    ]),
    "docs/compress.md": DocPlan(
        setup="\n".join([TINY_FMNIST.format(out="runs/fmnist"), TINY_LM.format(out="runs/lm"),
                         TINY_FMNIST.format(out="runs/big"),
                         "shoestring train --model mlp --data fashion-mnist:@FMNIST@ "
                         "--epochs 1 --threads 1 --out runs/small > /dev/null"]),
        rules=[Rule("shoestring compress runs/fmnist --out runs/fmnist-small",
                    # a one-epoch teacher on 400 tiny images: a student may lose more
                    # than the documented 0.5 points; the guard itself is tested elsewhere
                    subs=(("--methods distill,distill+dynamic-int8",
                           "--methods distill,distill+dynamic-int8 --max-drop 100"),),
                    expect=("test_accuracy",))]),
    "docs/data.md": DocPlan(rules=[
        Rule("--model cnn --augment crop=2,flip",
             subs=(("--augment crop=2,flip", "--augment crop=2,flip --epochs 1"),)),
    ]),
    "docs/finetune.md": DocPlan(setup=TINY_LLAMA_FOLDER, rules=[
        Rule("--objective mlm",
             subs=(("--max-steps 200", "--max-steps 3 --threads 1"),
                   ("--max-steps 300", "--max-steps 3 --threads 1"),
                   ("--max-steps 100", "--max-steps 3 --threads 1")),
             after="test -f exported/config.json && test -f runs/cls/model.safetensors"),
    ]),
    "docs/plan.md": DocPlan(
        setup='printf \'[model]\\nname = "seed-mlp"\\n[data]\\nsource = "digits"\\n\' > run.toml',
        rules=[
            Rule("my-prices.toml", write="my-prices.toml",
                 after="shoestring plan gpt2-124m --tokens 1e9 --catalog my-prices.toml "
                       "> /dev/null"),
            Rule("verdict = check_fits(train_config)",
                 prelude="from shoestring import resolve_config\n"
                         "train_config = resolve_config({'data': {'source': 'digits'}})"),
        ]),
    "docs/report.md": DocPlan(
        setup="\n".join([TINY_FMNIST.format(out="runs/fmnist"),
                         TINY_FMNIST.format(out="runs/fmnist-small")]),
        rules=[Rule("shoestring report runs/fmnist --json", expect=('"sections"',)),
               Rule("shoestring ui token create",
                    drop=(("# http://127.0.0.1:8765/", "a server that runs until Ctrl-C "
                           "(tests/integration/test_report_browser.py runs it)"),
                          ("--port 9000", "a server that runs until Ctrl-C"),
                          ("revoke ID", "needs a token id from the list"),
                          ("--host 0.0.0.0", "binds beyond loopback")))]),
    "docs/serve.md": DocPlan(rules=[
        Rule("shoestring keys create --project acme --plan pro",
             subs=(("shoestring keys create --project acme --plan pro",
                    "KEY=$(shoestring keys create --project acme --plan pro --json | "
                    "python -c 'import json,sys; print(json.load(sys.stdin)[\"key\"])'); "
                    "export KEY"),),
             expect=('"outputs"', '"requests": 1')),
        Rule("serve_demo(", before="stop_server   # a reader stops the first server (Ctrl-C)"),
        Rule("--out runs/bard", subs=(("--max-steps 300", "--max-steps 5"),)),
        Rule("[pro]", write="plans.toml",
             after="shoestring keys create --project p --plan pro --plans plans.toml > /dev/null"),
        Rule('client = OpenAI(base_url=',
             prelude="import os\nKEY = os.environ['KEY']",
             subs=(("max_tokens=48", "max_tokens=8"),),
             expect=("completion_tokens",)),
        Rule('"stream": true}', subs=(('"max_tokens": 32', '"max_tokens": 8'),),
             expect=("data: [DONE]",)),
    ]),
    "docs/transformers.md": DocPlan(
        setup=TINY_LM.format(out="runs/shakespeare"),
        rules=[
            Rule('n_kv_head = 2\nn_embd = 128', write="llama.toml",
                 after="shoestring plan llama.toml > /dev/null"),
            Rule("logits, loss = model(x, y)",
                 prelude="import torch\nx = torch.randint(0, 65, (2, 64))\ny = x.clone()"),
            Rule("fpt = transformer_flops_per_token(",
                 prelude="from shoestring.models.gpt import GPTConfig\n"
                         "config = GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, "
                         "vocab_size=65)\ntokens_per_second, peak_flops = 1e4, 174e9"),
            Rule("save_tokenizer(data.tokenizer",
                 prelude="from pathlib import Path\nrun_dir = Path('tok-run')\n"
                         "run_dir.mkdir(exist_ok=True)"),
            Rule('shoestring generate runs/shakespeare',
                 subs=(("--max-new-tokens 200", "--max-new-tokens 20"),)),
            Rule("generate_text(", prelude=GPT_FRAGMENT + "idx = torch.zeros((1, 1), dtype=torch.long)",
                 subs=(("max_new_tokens=200", "max_new_tokens=20"),
                       ("max_new_tokens=50", "max_new_tokens=5"))),
            Rule("cache = KVCache(", prelude=GPT_FRAGMENT
                 + "prompt_ids = torch.randint(0, 65, (1, 5))\n"
                 + "next_ids = torch.randint(0, 65, (2, 1))"),
        ]),
}
