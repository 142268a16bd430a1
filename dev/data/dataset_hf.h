/*
build_data --hf-tokenizer: a text file's train/val splits encoded with a Hugging Face
tokenizer.json (llmc/formats/hf_tokenizer.h), written like llmc/data/dataset.h's shards. Kept apart
from dataset.h so that the data loaders do not compile the tokenizer and its Unicode tables.
*/
#pragma once
#include "../../llmc/data/dataset.h"
#include "../../llmc/formats/hf_tokenizer.h"

// The end-of-text id of a tokenizer.json, as scripts/tokenize_hf.py picks it: the eos_token of
// the tokenizer_config.json beside it, else <|endoftext|> or <|end_of_text|>; `name` (non-empty)
// overrides them.
static inline int hf_end_of_text_id(const HFTokenizer& tok, const std::string& name) {
    auto id_of = [&](const std::string& piece) { return hf_tokenizer_find(&tok, piece, false); };
    if (!name.empty()) {
        const int id = id_of(name);
        if (id < 0) fail("%s: no token '%s' (the end-of-text token asked for)", tok.path.c_str(), name.c_str());
        return id;
    }
    const size_t slash = tok.path.find_last_of('/');
    const std::string cfg = (slash == std::string::npos ? std::string() : tok.path.substr(0, slash + 1)) + "tokenizer_config.json";
    if (file_exists(cfg)) {
        const JsonDoc d = json_parse_file(cfg);
        const JsonValue* e = d.value.type == JSON_OBJECT ? d.value.find("eos_token") : nullptr;
        if (e && e->type == JSON_OBJECT) e = e->find("content");
        if (e && e->type == JSON_STRING) {
            const int id = id_of(e->str);
            if (id < 0) fail("%s: eos_token '%s' is not a token of %s", cfg.c_str(), e->str.c_str(), tok.path.c_str());
            return id;
        }
    }
    for (const char* p : {"<|endoftext|>", "<|end_of_text|>"}) {   // GPT-2 / Qwen, Llama 3
        const int id = id_of(p);
        if (id >= 0) return id;
    }
    fail("%s: no end-of-text token (no tokenizer_config.json eos_token beside it, no <|endoftext|> or <|end_of_text|>): name one with --eot",
         tok.path.c_str());
}

// The same splits encoded with a Hugging Face tokenizer.json (llmc/formats/hf_tokenizer.h: exact for
// the GPT-2, Llama 3 and Qwen2 families): train_000.bin and val_000.bin (uint16 ids when the
// vocabulary fits, else uint32), each starting with the end-of-text id `eot` like dataset.h's
// shards, and meta.txt; no tokenizer.bin (samples decode with the tokenizer.json).
static inline void build_text_dataset_hf(const std::string& text_path, const std::string& out_dir, const HFTokenizer& tok, int eot,
                                         double val_fraction) {
    if (out_dir.empty()) fail("build_text_dataset: empty output directory");
    if (eot < 0 || eot >= tok.size()) fail("%s: end-of-text id %d is not in the vocabulary (%d ids)", tok.path.c_str(), eot, tok.size());
    const double t0 = wall_seconds();
    std::string train_text, val_text;
    read_train_val_split(text_path, val_fraction, &train_text, &val_text);
    std::vector<int> train_ids = hf_tokenizer_encode(&tok, train_text, false);
    std::vector<int> val_ids = hf_tokenizer_encode(&tok, val_text, false);
    write_text_dataset(out_dir, tok.path, train_text.size(), val_text.size(), std::move(train_ids), std::move(val_ids), eot, tok.size(),
                       wall_seconds() - t0);
    printf("build_data: wrote %s/{train_000.bin,val_000.bin,meta.txt} (vocab %d, end-of-text id %d)\n", out_dir.c_str(), tok.size(), eot);
}
