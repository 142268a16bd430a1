// libFuzzer target: tokenizer_load (llmc/formats/tokenizer.h) on arbitrary bytes.
// A file it accepts must give a working tokenizer: encode/decode round-trips
// any text, and save + load reproduces the same merges.
#include "fuzz_common.h"
#include "../llmc/formats/tokenizer.h"

static const std::string SAMPLE =
    "First Citizen:\nBefore we proceed, hear me speak.\n  All:\tSpeak, speak! 12345 caf\xc3\xa9 \xe2\x82\xac\r\n"
    "\xff\xfe\x00 raw bytes and a long run: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa the the the";

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return fuzz_run([&] {
        const std::string path = fuzz_write("tokenizer.bin", data, size);
        Tokenizer t;
        tokenizer_load(&t, path);
        FUZZ_CHECK(t.vocab_size >= 257 && (int)t.merges.size() == t.vocab_size - 257 && t.eot_token == t.vocab_size - 1);
        const std::string text = SAMPLE + std::string((const char*)data, std::min<size_t>(size, 512));
        const std::vector<int> ids = tokenizer_encode(&t, text);
        for (int id : ids) FUZZ_CHECK(id >= 0 && id < t.eot_token);
        FUZZ_CHECK(tokenizer_decode(&t, ids.data(), ids.size()) == text);
        const int odd[4] = {-1, t.eot_token, t.vocab_size, 1 << 30};
        tokenizer_decode(&t, odd, 4);
        const std::string copy = fuzz_dir() + "/tokenizer_copy.bin";
        tokenizer_save(&t, copy);
        Tokenizer u;
        tokenizer_load(&u, copy);
        FUZZ_CHECK(u.merges == t.merges && u.vocab == t.vocab);
    });
}
