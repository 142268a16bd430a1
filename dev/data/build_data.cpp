/*
build_data: turns any text file into a dataset the trainers read: a byte-level
BPE tokenizer trained on the train split, llm.c token shards for the train and
validation splits, and meta.txt with their byte and token counts
(llmc/data/dataset.h has the details).

  make build_data
  ./build_data --input data/tinyshakespeare.txt --out-dir data/shakespeare --vocab-size 1024 --val-fraction 0.1
  ./train_gpt --train-data "data/mine/train_*.bin" --val-data "data/mine/val_*.bin" --tokenizer data/mine/tokenizer.bin

With --hf-tokenizer a model's tokenizer.json encodes the text instead (exactly as the
Hugging Face tokenizers library does, for the GPT-2, Llama 3 and Qwen2 families;
llmc/formats/hf_tokenizer.h), no tokenizer is trained, and each split starts with the model's
end-of-text id (the eos_token of tokenizer_config.json beside it, else <|endoftext|>
or <|end_of_text|>, or --eot), so data for fine-tuning a Hugging Face model needs no Python:
  ./build_data --input text.txt --out-dir data/mine --hf-tokenizer MODEL/tokenizer.json
  ./train_gpt --init-hf MODEL --train-data "data/mine/train_*.bin" --val-data "data/mine/val_*.bin" --tokenizer ""
*/
#include <ctime>
#include <string>
#include "../../llmc/core/utils.h"
#include "../../llmc/core/args.h"
#include "dataset_hf.h"

int main(int argc, char** argv) {
    std::string input, out_dir;
    int vocab_size = 1024;
    float val_fraction = 0.1f;
    std::string hf_tokenizer, eot;
    ArgParser ap;
    ap.program = "build_data";
    ap.usage = "./build_data --input text.txt --out-dir data/mydata [--vocab-size 1024] [--val-fraction 0.1]";
    ap.section("dataset");
    ap.add_string("--input", &input, "text file to tokenize (any bytes)");
    ap.add_string("--out-dir", &out_dir, "directory for tokenizer.bin, train_000.bin, val_000.bin, meta.txt");
    ap.add_int("--vocab-size", &vocab_size, "tokenizer vocabulary: 256 bytes + merges + end-of-text (>= 257)");
    ap.add_float("--val-fraction", &val_fraction, "last fraction of the bytes held out for validation, in (0, 1)");
    ap.add_string("--hf-tokenizer", &hf_tokenizer, "encode with this Hugging Face tokenizer.json instead of training one (--vocab-size unused)");
    ap.add_string("--eot", &eot, "with --hf-tokenizer: the end-of-text token (default: tokenizer_config.json's eos_token, else <|endoftext|> or <|end_of_text|>)");
    if (!ap.parse(argc, argv)) { ap.print_help(); return 0; }
    if (input.empty()) fail("flag --input: required (the text file to tokenize)");
    if (out_dir.empty()) fail("flag --out-dir: required (where the dataset goes)");
    if (vocab_size < 257) fail("flag --vocab-size: must be >= 257 (256 bytes + end-of-text), got %d", vocab_size);
    if (vocab_size > (1 << 24)) fail("flag --vocab-size: must be <= %d, got %d", 1 << 24, vocab_size);
    if (!(val_fraction > 0.0f && val_fraction < 1.0f)) fail("flag --val-fraction: must be in (0, 1), got %g", val_fraction);
    if (!eot.empty() && hf_tokenizer.empty()) fail("flag --eot: only with --hf-tokenizer");
    const double t0 = wall_seconds();
    if (!hf_tokenizer.empty()) {
        HFTokenizer tok;
        hf_tokenizer_load(&tok, hf_tokenizer);
        if (!tok.encode_error.empty()) fail("%s", tok.encode_error.c_str());
        build_text_dataset_hf(input, out_dir, tok, hf_end_of_text_id(tok, eot), val_fraction);
    } else {
        build_text_dataset(input, out_dir, vocab_size, val_fraction);
    }
    printf("build_data: done in %.2f s\n", wall_seconds() - t0);
    return 0;
}
