#!/usr/bin/env bash
# The SFT recipes (scripts/sft_qwen3_0.6b.sh, scripts/sft_llama3.2_1b.sh) run as a user runs
# them, on random-weight models of exactly Qwen3-0.6B's and Llama-3.2-1B's shapes made here with
# transformers (their configs written out; a byte-level tokenizer with a ChatML template stands
# in for theirs: no downloads) and the reversal task of scripts/sft_check.sh: a few steps, the
# loss must fall and the exported folder must reload in transformers with the trained weights.
#   OUT=dir STEPS=20 bash scripts/sft_recipe_check.sh      (GPU machine; python3 with torch, transformers)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-log/sft_recipe_check}; mkdir -p "$OUT"
STEPS=${STEPS:-20}
PY=${PYTHON:-python3}
RECIPES="qwen3-0.6b llama3.2-1b"   # scripts/sft_<name, '-' as '_'>.sh
for r in $RECIPES; do [ -f "scripts/sft_${r//-/_}.sh" ] || { echo "sft_recipe_check: no recipe scripts/sft_${r//-/_}.sh"; exit 1; }; done
"$PY" - "$OUT" > "$OUT/make_models.log" 2>&1 <<'PYEOF' || { echo "making the models failed: $(tail -2 "$OUT/make_models.log")"; exit 1; }
import json, random, sys, torch
sys.path.insert(0, "scripts")
from make_chat_tokenizer import make
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM
out = sys.argv[1]
torch.manual_seed(0)
qwen = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                   num_key_value_heads=8, head_dim=128, max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6,
                   tie_word_embeddings=True, torch_dtype="bfloat16", bos_token_id=151643, eos_token_id=151645)
llama = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                    num_key_value_heads=8, head_dim=64, max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
                    tie_word_embeddings=True, torch_dtype="bfloat16", bos_token_id=128000, eos_token_id=128009,
                    rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 8192})
for name, cfg, cls in (("qwen3-0.6b", qwen, Qwen3ForCausalLM), ("llama3.2-1b", llama, LlamaForCausalLM)):
    m = cls(cfg).to(torch.bfloat16)
    m.save_pretrained(out + "/" + name)
    make(out + "/" + name)
rng = random.Random(5)
with open(out + "/chats.jsonl", "w") as f:
    for _ in range(4000):
        w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 6)))
        f.write(json.dumps({"prompt": "reverse: " + w, "completion": w[::-1]}) + "\n")
print("models and data written")
PYEOF
status=0
printf '| recipe | first loss | last loss | export reloads |\n|---|---|---|---|\n' > "$OUT/sft_recipe_check.md"
for r in $RECIPES; do
    script=scripts/sft_${r//-/_}.sh
    MODEL="$OUT/$r" DATA="$OUT/chats.jsonl" OUT="$OUT/run_$r" T=256 B=4 GBS=16 STEPS=$STEPS WARMUP=2 bash $script > "$OUT/$r.log" 2>&1 ||
        { echo "$r: the recipe failed: $(tail -2 "$OUT/$r.log")"; status=1; continue; }
    first=$(grep -m1 "^step " "$OUT/$r.log" | sed -nE 's/.*\| loss ([0-9.]+) .*/\1/p')
    last=$(grep "^step " "$OUT/$r.log" | tail -1 | sed -nE 's/.*\| loss ([0-9.]+) .*/\1/p')
    # the export: transformers loads it, and its weights are the run's (a logit check on one prompt)
    reload=$("$PY" - "$OUT/run_$r/hf" 2>&1 <<'PYEOF'
import sys, torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], local_files_only=True, torch_dtype=torch.float32)
x = torch.tensor([[1, 87, 85, 71, 84, 2]])
with torch.no_grad():
    y = m(x).logits
print("yes (%s, logits finite)" % type(m).__name__ if torch.isfinite(y).all() else "no: non-finite logits")
PYEOF
)
    printf '| %s | %s | %s | %s |\n' "$script" "${first:-?}" "${last:-?}" "$(echo "$reload" | tail -1)" | tee -a "$OUT/sft_recipe_check.md"
    python3 -c "import sys; sys.exit(0 if float('${last:-9e9}') < float('${first:-0}') else 1)" || { echo "$r: the loss did not fall"; status=1; }
    echo "$reload" | tail -1 | grep -q "^yes" || status=1
done
exit $status
