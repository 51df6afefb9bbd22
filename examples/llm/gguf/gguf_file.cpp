#include "gguf_file.hpp"

#include <bit>
#include <cstring>
#include <limits>
#include <utility>

#include "byte_reader.hpp"

namespace capkv::llm {
namespace {

static_assert(
    std::endian::native == std::endian::little,
    "the GGUF reader decodes little-endian files by memcpy and needs a little-endian host");

constexpr std::uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
// Nested arrays are legal but nothing real uses more than one level; the cap bounds recursion
// depth on hostile input.
constexpr int kMaxArrayDepth = 8;
// general.alignment beyond this is surely corrupt, and capping it keeps align_up free of overflow.
constexpr std::uint64_t kMaxAlignment = std::uint64_t{1} << 30;
// Smallest possible encodings, used to reject counts the remaining bytes cannot possibly hold
// before anything is allocated for them.
constexpr std::uint64_t kMinKeyValueBytes = 8 + 1 + 4 + 1;  // key length, 1-byte key, type, u8
constexpr std::uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;  // name, 1 dim, type, offset

class Parser {
 public:
  explicit Parser(std::span<const std::byte> bytes) : reader_(bytes) {}

  GgufValue read_value(GgufValueType type, int depth, const std::string& what) {
    if (type == GgufValueType::kString) return GgufValue::string(reader_.read_string(what));
    if (type == GgufValueType::kArray) return GgufValue::array(read_array(depth, what));
    const auto raw = reader_.read_bytes(gguf_scalar_size(type), what);
    try {
      return GgufValue::decode_scalar(type, raw.data());
    } catch (const GgufError& e) {
      throw GgufError(what + ": " + e.what());
    }
  }

  GgufValueType read_value_type(const std::string& what) {
    const auto id = reader_.read<std::uint32_t>(what);
    if (!gguf_value_type_is_valid(id)) {
      throw GgufError(what + " has unknown value type id " + std::to_string(id));
    }
    return static_cast<GgufValueType>(id);
  }

  ByteReader& reader() { return reader_; }

 private:
  GgufArray read_array(int depth, const std::string& what) {
    if (depth >= kMaxArrayDepth) {
      throw GgufError(what + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth));
    }
    const GgufValueType element = read_value_type(what + " element type");
    const auto count = reader_.read<std::uint64_t>(what + " length");
    const std::size_t width = gguf_scalar_size(element);
    // Lower bound on each element's encoding: its fixed size, a string's length field, or a nested
    // array's type and count.
    const std::uint64_t min_bytes = width != 0 ? width : element == GgufValueType::kString ? 8 : 12;
    if (count > reader_.remaining() / min_bytes) {
      throw GgufError(what + " claims " + std::to_string(count) + " " +
                      gguf_value_type_name(element) + " elements but only " +
                      std::to_string(reader_.remaining()) + " bytes remain");
    }
    if (width != 0) {
      return GgufArray::scalars(element, count, reader_.read_bytes(count * width, what));
    }
    if (element == GgufValueType::kString) {
      std::vector<std::string_view> items;
      items.reserve(count);
      for (std::uint64_t i = 0; i < count; ++i) {
        // The element's name is only built on failure: token tables have ~50k entries.
        try {
          items.push_back(reader_.read_string("string"));
        } catch (const GgufError& e) {
          throw GgufError(what + "[" + std::to_string(i) + "]: " + e.what());
        }
      }
      return GgufArray::strings(std::move(items));
    }
    std::vector<GgufValue> items;
    items.reserve(count);
    for (std::uint64_t i = 0; i < count; ++i) {
      items.push_back(
          GgufValue::array(read_array(depth + 1, what + "[" + std::to_string(i) + "]")));
    }
    return GgufArray::arrays(std::move(items));
  }

  ByteReader reader_;
};

bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}
bool checked_add(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return !__builtin_add_overflow(a, b, &out);
}

// Runs a typed accessor and puts the key into any error it raises.
template <typename F>
decltype(auto) with_key(const GgufFile& file, std::string_view key, F&& get) {
  const GgufValue& value = file.at(key);
  try {
    return get(value);
  } catch (const GgufError& e) {
    throw GgufError("GGUF " + file.source() + ": metadata " + gguf_quote(key) + ": " + e.what());
  }
}

}  // namespace

GgufFile GgufFile::open(const std::filesystem::path& path) {
  GgufFile file;
  file.source_ = path.string();
  file.mapping_ = MappedFile(path);
  file.bytes_ = file.mapping_.bytes();
  file.parse_all();
  return file;
}

GgufFile GgufFile::parse(std::span<const std::byte> bytes, std::string source) {
  GgufFile file;
  file.source_ = std::move(source);
  file.bytes_ = bytes;
  file.parse_all();
  return file;
}

void GgufFile::fail(const std::string& message) const {
  throw GgufError("GGUF " + source_ + ": " + message);
}

void GgufFile::parse_all() {
  try {
    Parser parser(bytes_);
    ByteReader& in = parser.reader();

    const auto magic = in.read_bytes(4, "magic");
    if (std::memcmp(magic.data(), "GGUF", 4) != 0) {
      throw GgufError("not a GGUF file (bad magic; expected \"GGUF\")");
    }
    version_ = in.read<std::uint32_t>("version");
    if (version_ != 2 && version_ != 3) {
      if ((version_ & 0xffffu) == 0 && (version_ >> 16) != 0) {
        throw GgufError("big-endian GGUF files are not supported");
      }
      if (version_ == 1) {
        throw GgufError("GGUF version 1 (32-bit counts) is not supported; only versions 2 and 3");
      }
      throw GgufError("unsupported GGUF version " + std::to_string(version_) +
                      "; only versions 2 and 3");
    }
    const auto n_tensors = in.read<std::uint64_t>("tensor count");
    const auto n_kv = in.read<std::uint64_t>("metadata count");
    if (n_kv > in.remaining() / kMinKeyValueBytes) {
      throw GgufError("metadata count " + std::to_string(n_kv) + " cannot fit in the " +
                      std::to_string(in.remaining()) + " bytes that follow the header");
    }
    if (n_tensors > in.remaining() / kMinTensorInfoBytes) {
      throw GgufError("tensor count " + std::to_string(n_tensors) + " cannot fit in the " +
                      std::to_string(in.remaining()) + " bytes that follow the header");
    }

    metadata_.reserve(n_kv);
    for (std::uint64_t i = 0; i < n_kv; ++i) {
      const std::string what = "metadata #" + std::to_string(i);
      const std::string_view key = in.read_string(what + " key");
      if (key.empty()) throw GgufError(what + " has an empty key");
      if (metadata_index_.contains(key)) {
        throw GgufError("duplicate metadata key " + gguf_quote(key));
      }
      const std::string context = what + " (" + gguf_quote(key) + ")";
      const GgufValueType type = parser.read_value_type(context + " type");
      GgufValue value = parser.read_value(type, 0, context);
      metadata_index_.emplace(std::string(key), metadata_.size());
      metadata_.push_back({std::string(key), std::move(value)});
    }

    if (const GgufValue* align = find("general.alignment")) {
      if (!align->is_integer()) {
        throw GgufError("general.alignment must be an integer, found " +
                        gguf_value_type_name(align->type()));
      }
      const std::int64_t a = align->as_i64();
      if (a <= 0 || !std::has_single_bit(static_cast<std::uint64_t>(a)) ||
          static_cast<std::uint64_t>(a) > kMaxAlignment) {
        throw GgufError("general.alignment " + std::to_string(a) +
                        " is not a power of two in [1, 2^30]");
      }
      alignment_ = static_cast<std::uint64_t>(a);
    }

    tensors_.reserve(n_tensors);
    for (std::uint64_t i = 0; i < n_tensors; ++i) {
      const std::string what = "tensor #" + std::to_string(i);
      GgufTensorInfo info;
      info.name = std::string(in.read_string(what + " name"));
      if (info.name.empty()) throw GgufError(what + " has an empty name");
      if (tensor_index_.contains(info.name)) {
        throw GgufError("duplicate tensor name " + gguf_quote(info.name));
      }
      const std::string context = "tensor " + gguf_quote(info.name);
      const auto n_dims = in.read<std::uint32_t>(context + " dimension count");
      if (n_dims == 0 || n_dims > kMaxDims) {
        throw GgufError(context + " has " + std::to_string(n_dims) + " dimensions; expected 1 to " +
                        std::to_string(kMaxDims));
      }
      info.n_elements = 1;
      for (std::uint32_t d = 0; d < n_dims; ++d) {
        const auto ne = in.read<std::uint64_t>(context + " shape");
        // ggml keeps ne as int64_t; anything above that is corrupt.
        if (ne > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
            !checked_mul(info.n_elements, ne, info.n_elements) ||
            info.n_elements >
                static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
          throw GgufError(context + " has a shape whose element count overflows");
        }
        info.shape.push_back(ne);
      }
      const auto type_id = in.read<std::uint32_t>(context + " type");
      const auto traits = ggml_type_traits(type_id);
      if (!traits) {
        throw GgufError(context + " has unknown ggml type id " + std::to_string(type_id));
      }
      info.type = static_cast<GgmlType>(type_id);
      if (info.shape[0] % traits->block_size != 0) {
        throw GgufError(context + " row length " + std::to_string(info.shape[0]) +
                        " is not a multiple of the " + ggml_type_name(type_id) + " block size " +
                        std::to_string(traits->block_size));
      }
      info.n_bytes = ggml_bytes_for(info.type, info.n_elements);
      info.offset = in.read<std::uint64_t>(context + " offset");
      if (info.offset % alignment_ != 0) {
        throw GgufError(context + " offset " + std::to_string(info.offset) +
                        " is not a multiple of the alignment " + std::to_string(alignment_));
      }
      tensor_index_.emplace(info.name, tensors_.size());
      tensors_.push_back(std::move(info));
    }

    // Alignment <= 2^30 and the offset <= the buffer size, so this cannot overflow.
    const std::uint64_t end_of_infos = in.offset();
    data_offset_ = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;
    const std::uint64_t file_size = bytes_.size();
    for (const auto& info : tensors_) {
      std::uint64_t begin = 0;
      std::uint64_t end = 0;
      if (!checked_add(data_offset_, info.offset, begin) ||
          !checked_add(begin, info.n_bytes, end) || end > file_size) {
        throw GgufError("tensor " + gguf_quote(info.name) + " data (" +
                        std::to_string(info.n_bytes) + " bytes at data offset " +
                        std::to_string(info.offset) + ") extends past the end of the file (" +
                        std::to_string(file_size) + " bytes, data section at " +
                        std::to_string(data_offset_) + ")");
      }
    }
  } catch (const GgufError& e) {
    fail(e.what());
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].value;
}

const GgufValue& GgufFile::at(std::string_view key) const {
  const GgufValue* value = find(key);
  if (value == nullptr) fail("missing metadata key " + gguf_quote(key));
  return *value;
}

std::uint64_t GgufFile::get_u64(std::string_view key) const {
  return with_key(*this, key, [](const GgufValue& v) { return v.as_u64(); });
}
std::uint32_t GgufFile::get_u32(std::string_view key) const {
  return with_key(*this, key, [](const GgufValue& v) { return v.as_u32(); });
}
std::int64_t GgufFile::get_i64(std::string_view key) const {
  return with_key(*this, key, [](const GgufValue& v) { return v.as_i64(); });
}
std::int32_t GgufFile::get_i32(std::string_view key) const {
  return with_key(*this, key, [](const GgufValue& v) { return v.as_i32(); });
}
double GgufFile::get_f64(std::string_view key) const {
  return with_key(*this, key, [](const GgufValue& v) { return v.as_f64(); });
}
float GgufFile::get_f32(std::string_view key) const {
  return with_key(*this, key, [](const GgufValue& v) { return v.as_f32(); });
}
bool GgufFile::get_bool(std::string_view key) const {
  return with_key(*this, key, [](const GgufValue& v) { return v.as_bool(); });
}
std::string GgufFile::get_string(std::string_view key) const {
  return with_key(*this, key, [](const GgufValue& v) { return std::string(v.as_string()); });
}
const GgufArray& GgufFile::get_array(std::string_view key) const {
  return with_key(*this, key, [](const GgufValue& v) -> const GgufArray& { return v.as_array(); });
}
std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  return with_key(*this, key, [](const GgufValue& v) { return v.as_array().to_strings(); });
}
std::vector<std::int64_t> GgufFile::get_i64_array(std::string_view key) const {
  return with_key(*this, key, [](const GgufValue& v) { return v.as_array().to_i64(); });
}
std::vector<float> GgufFile::get_f32_array(std::string_view key) const {
  return with_key(*this, key, [](const GgufValue& v) { return v.as_array().to_f32(); });
}

std::uint64_t GgufFile::get_u64_or(std::string_view key, std::uint64_t fallback) const {
  return contains(key) ? get_u64(key) : fallback;
}
std::uint32_t GgufFile::get_u32_or(std::string_view key, std::uint32_t fallback) const {
  return contains(key) ? get_u32(key) : fallback;
}
float GgufFile::get_f32_or(std::string_view key, float fallback) const {
  return contains(key) ? get_f32(key) : fallback;
}
bool GgufFile::get_bool_or(std::string_view key, bool fallback) const {
  return contains(key) ? get_bool(key) : fallback;
}
std::string GgufFile::get_string_or(std::string_view key, std::string_view fallback) const {
  return contains(key) ? get_string(key) : std::string(fallback);
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* info = find_tensor(name);
  if (info == nullptr) fail("missing tensor " + gguf_quote(name));
  return *info;
}

std::span<const std::byte> GgufFile::tensor_data(const GgufTensorInfo& info) const {
  // Bounds were validated at parse time; re-check in case `info` came from another file.
  const GgufTensorInfo* own = find_tensor(info.name);
  if (own == nullptr || own->offset != info.offset || own->n_bytes != info.n_bytes) {
    fail("tensor " + gguf_quote(info.name) + " does not belong to this file");
  }
  return bytes_.subspan(data_offset_ + own->offset, own->n_bytes);
}

}  // namespace capkv::llm
