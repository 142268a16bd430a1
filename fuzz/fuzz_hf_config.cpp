// libFuzzer target: hf_load_config (llmc/formats/hf.h) on arbitrary bytes as DIR/config.json,
// then hf_tokenizer_load (llmc/formats/hf_tokenizer.h) on the same bytes as a tokenizer.json
// and a decode of every id it accepts (and an encode where it can encode). Both must reject bad
// JSON, missing or unsupported fields and absurd sizes with one line. Then the bytes as text for
// hf_tokenizer_encode with test/data/hf_encode/llama3.json: valid UTF-8 round-trips through
// encode and decode, invalid UTF-8 is refused; with test/data/hf_encode/qwen2.json (NFC) it
// comes back as NFC(x), and NFC(NFC(x)) == NFC(x).
#include "fuzz_common.h"
#include "../llmc/formats/hf.h"
#include "../llmc/formats/hf_tokenizer.h"

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
        if (hf_tokenizer_encode_error(&t).empty()) {
            // an encodable tokenizer gives ids that have tokens (the text may still be refused: NFC)
            const std::string text = "Hello, world! It's 12345 caf\xc3\xa9 \xe4\xb8\xad\n\n\t<|endoftext|> " +
                                     std::string((const char*)data, std::min<size_t>(size, 256));
            for (int id : hf_tokenizer_encode(&t, text, false)) FUZZ_CHECK(id >= 0 && id < t.size() && t.has[id]);
        }
    });
    // the fuzz bytes as text for a real (Llama 3 style) tokenizer.json: valid UTF-8 encodes and
    // decodes back to itself, anything else is refused with one line
    static HFTokenizer* l3 = [] {
        HFTokenizer* t = new HFTokenizer;
        hf_tokenizer_load(t, "test/data/hf_encode/llama3.json");
        return t;
    }();
    const std::string text((const char*)data, std::min<size_t>(size, 4096));
    const bool valid = hf_utf8_invalid_at(text) < 0;
    bool encoded = false;
    rc |= fuzz_run([&] {
        const std::vector<int> ids = hf_tokenizer_encode(l3, text, true);
        encoded = true;
        FUZZ_CHECK(!ids.empty() && ids[0] == l3->bos_ids[0]);
        FUZZ_CHECK(hf_tokenizer_decode(l3, ids.data() + 1, ids.size() - 1) == text);
    });
    FUZZ_CHECK(encoded == valid);
    // and for a Qwen2 style one (NFC normalizer): decode(encode(x)) is NFC(x), which is NFC
    static HFTokenizer* qw = [] {
        HFTokenizer* t = new HFTokenizer;
        hf_tokenizer_load(t, "test/data/hf_encode/qwen2.json");
        return t;
    }();
    if (valid) {
        const std::vector<int> ids = hf_tokenizer_encode(qw, text, false);
        const std::string n = hf_nfc(text);
        FUZZ_CHECK(hf_tokenizer_decode(qw, ids.data(), ids.size()) == n);
        FUZZ_CHECK(hf_nfc(n) == n);
    }
    return rc;
}
