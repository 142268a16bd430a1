// libFuzzer target: hf_load_config (llmc/hf.h) on arbitrary bytes as DIR/config.json,
// then hf_tokenizer_load (llmc/hf_tokenizer.h) on the same bytes as a tokenizer.json
// and a decode of every id it accepts. Both must reject bad JSON, missing or
// unsupported fields and absurd sizes with one line.
#include "fuzz_common.h"
#include "../llmc/hf.h"
#include "../llmc/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    int rc = fuzz_run([&] {
        const std::string dir = fuzz_dir() + "/hf";
        fuzz_mkdir(dir);
        fuzz_write("hf/config.json", data, size);
        const GPTConfig c = hf_load_config(dir);
        FUZZ_CHECK(c.vocab_size > 0 && c.n_layer > 0 && c.n_head > 0 && c.n_kv_head > 0 && c.n_head % c.n_kv_head == 0);
        FUZZ_CHECK(c.d_model > 0 && c.head_dim > 0 && c.ffn_hidden > 0 && c.padded_vocab_size >= c.vocab_size);
        gpt_param_layout(c);
    });
    rc |= fuzz_run([&] {
        const std::string path = fuzz_write("tokenizer.json", data, size);
        HFTokenizer t;
        hf_tokenizer_load(&t, path);
        FUZZ_CHECK(t.size() >= t.n_tokens && (int)t.has.size() == t.size());
        std::vector<int> ids;
        for (int i = 0; i < t.size() && i < 4096; i++) ids.push_back(i);
        hf_tokenizer_decode(&t, ids.data(), ids.size());
        const int bad = t.size();
        FUZZ_CHECK(hf_tokenizer_decode(&t, &bad, 1).empty());  // an id past the vocabulary decodes to nothing
    });
    return rc;
}
