// Byte and char tokenizers, UTF-8 decoding/encoding, and the description string that stores a
// tokenizer in a dataset file (see tokenizer.h for the format).
#include "data/tokenizer.h"

#include <algorithm>
#include <charconv>

#include "core/check.h"

namespace seqmix::data {

const char* tokenizer_kind_name(TokenizerKind k) {
  return k == TokenizerKind::Byte ? "byte" : "char";
}

TokenizerKind parse_tokenizer_kind(std::string_view name) {
  if (name == "byte") return TokenizerKind::Byte;
  if (name == "char") return TokenizerKind::Char;
  SEQMIX_THROW(Value, "unknown tokenizer '{}' (expected byte or char)", name);
}

std::vector<uint32_t> utf8_decode(std::string_view text, std::string_view what) {
  std::vector<uint32_t> out;
  out.reserve(text.size());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t b0 = uint8_t(text[i]);
    if (b0 < 0x80) {
      out.push_back(b0);
      ++i;
      continue;
    }
    int len;
    uint32_t cp, min_cp;
    if ((b0 & 0xE0) == 0xC0) {
      len = 2, cp = b0 & 0x1F, min_cp = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3, cp = b0 & 0x0F, min_cp = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4, cp = b0 & 0x07, min_cp = 0x10000;
    } else {
      SEQMIX_THROW(Data, "{}: invalid UTF-8 lead byte 0x{:02X} at byte offset {}", what, b0, i);
    }
    SEQMIX_CHECK_KIND(Data, i + size_t(len) <= n,
                      "{}: truncated UTF-8 sequence at byte offset {} (end of input)", what, i);
    for (int k = 1; k < len; ++k) {
      const uint8_t b = uint8_t(text[i + k]);
      SEQMIX_CHECK_KIND(Data, (b & 0xC0) == 0x80,
                        "{}: invalid UTF-8 continuation byte 0x{:02X} at byte offset {}", what, b,
                        i + k);
      cp = (cp << 6) | (b & 0x3F);
    }
    SEQMIX_CHECK_KIND(Data, cp >= min_cp, "{}: overlong UTF-8 encoding at byte offset {}", what, i);
    SEQMIX_CHECK_KIND(Data, cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF),
                      "{}: invalid code point U+{:04X} at byte offset {}", what, cp, i);
    out.push_back(cp);
    i += size_t(len);
  }
  return out;
}

void utf8_append(std::string& out, uint32_t cp) {
  SEQMIX_CHECK(cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF),
               "utf8_append: U+{:04X} is not a Unicode scalar value", cp);
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

Tokenizer Tokenizer::byte() {
  return Tokenizer();
}

Tokenizer Tokenizer::char_from_code_points(std::vector<uint32_t> code_points) {
  std::sort(code_points.begin(), code_points.end());
  code_points.erase(std::unique(code_points.begin(), code_points.end()), code_points.end());
  SEQMIX_CHECK_KIND(Data, !code_points.empty(), "char tokenizer: the vocabulary is empty");
  for (uint32_t cp : code_points)
    SEQMIX_CHECK_KIND(Data, cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF),
                      "char tokenizer: U+{:04X} is not a Unicode scalar value", cp);
  Tokenizer t;
  t.kind_ = TokenizerKind::Char;
  t.code_points_ = std::move(code_points);
  t.id_of_cp_.reserve(t.code_points_.size());
  for (size_t i = 0; i < t.code_points_.size(); ++i)
    t.id_of_cp_.emplace(t.code_points_[i], int32_t(i));
  return t;
}

Tokenizer Tokenizer::char_level(const std::vector<std::string_view>& texts) {
  std::vector<bool> seen_bmp(0x10000, false);
  std::vector<uint32_t> cps;
  for (std::string_view text : texts) {
    for (uint32_t cp : utf8_decode(text)) {
      if (cp < 0x10000) {
        if (seen_bmp[cp]) continue;
        seen_bmp[cp] = true;
      }
      cps.push_back(cp);  // astral duplicates are removed by the sort/unique below
    }
  }
  SEQMIX_CHECK_KIND(Data, !cps.empty(), "char tokenizer: the input holds no characters");
  return char_from_code_points(std::move(cps));
}

Tokenizer Tokenizer::build(TokenizerKind kind, const std::vector<std::string_view>& texts) {
  return kind == TokenizerKind::Byte ? byte() : char_level(texts);
}

Tokenizer Tokenizer::from_description(std::string_view d) {
  if (d == "byte") return byte();
  constexpr std::string_view kPrefix = "char:";
  SEQMIX_CHECK_KIND(Data, d.substr(0, kPrefix.size()) == kPrefix,
                    "malformed tokenizer description '{}' (expected 'byte' or 'char:<code "
                    "points>')",
                    d.substr(0, 40));
  std::vector<uint32_t> cps;
  std::string_view rest = d.substr(kPrefix.size());
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view tok = rest.substr(0, comma);
    uint32_t cp = 0;
    const auto [ptr, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), cp);
    SEQMIX_CHECK_KIND(Data, ec == std::errc() && ptr == tok.data() + tok.size() && !tok.empty(),
                      "malformed char tokenizer description: bad code point '{}'", tok);
    cps.push_back(cp);
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  const size_t n = cps.size();
  Tokenizer t = char_from_code_points(std::move(cps));
  SEQMIX_CHECK_KIND(Data, size_t(t.vocab_size()) == n,
                    "malformed char tokenizer description: code points not unique");
  return t;
}

int64_t Tokenizer::vocab_size() const {
  return kind_ == TokenizerKind::Byte ? 256 : int64_t(code_points_.size());
}

std::string Tokenizer::description() const {
  if (kind_ == TokenizerKind::Byte) return "byte";
  std::string s = "char:";
  for (size_t i = 0; i < code_points_.size(); ++i) {
    if (i) s.push_back(',');
    s += std::to_string(code_points_[i]);
  }
  return s;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  if (kind_ == TokenizerKind::Byte) {
    ids.resize(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = int32_t(uint8_t(text[i]));
    return ids;
  }
  const std::vector<uint32_t> cps = utf8_decode(text);
  ids.resize(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) {
    const auto it = id_of_cp_.find(cps[i]);
    SEQMIX_CHECK(it != id_of_cp_.end(),
                 "char tokenizer: character U+{:04X} (character {} of the text) is not in the "
                 "vocabulary of {} characters",
                 cps[i], i, code_points_.size());
    ids[i] = it->second;
  }
  return ids;
}

template <typename I>
std::string Tokenizer::decode_impl(std::span<const I> ids) const {
  const int64_t v = vocab_size();
  std::string out;
  out.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = int64_t(ids[i]);
    SEQMIX_CHECK(id >= 0 && id < v, "{} tokenizer: token id {} at index {} is outside [0, {})",
                 kind_name(), id, i, v);
    if (kind_ == TokenizerKind::Byte)
      out.push_back(char(uint8_t(id)));
    else
      utf8_append(out, code_points_[size_t(id)]);
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int64_t> ids) const {
  return decode_impl(ids);
}
std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  return decode_impl(ids);
}

}  // namespace seqmix::data
