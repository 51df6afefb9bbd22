#include "model_fixture.hpp"

#include <filesystem>
#include <optional>

#include "gguf/gguf_file.hpp"

namespace capkv::llm::testing {

const LoadedModel* loaded_model() {
  // A function-local static: loaded by the first test that asks, shared by the rest. The GGUF
  // mapping is dropped afterwards; the model and tokenizer hold their own copies.
  static const std::optional<LoadedModel> model = []() -> std::optional<LoadedModel> {
    const std::filesystem::path path = default_model_path();
    if (!std::filesystem::exists(path)) return std::nullopt;
    const GgufFile file = GgufFile::open(path);
    return LoadedModel{LlamaModel::load(file), tokenizer_from_gguf(file)};
  }();
  return model ? &*model : nullptr;
}

std::string missing_model_message() {
  return "SmolLM2-135M-Instruct not found at " + default_model_path().string() +
         "; run scripts/fetch_model.sh (or point CAPKV_MODEL at the GGUF file)";
}

}  // namespace capkv::llm::testing
