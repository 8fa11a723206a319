// Tokenizers of the token datasets: `byte` (vocab 256, each byte of the text is one token) and
// `char` (vocab = the sorted set of distinct UTF-8 code points of the corpus, token id = rank of
// the code point in that set). A tokenizer is fully described by its description() string, which
// `seqmix prepare` stores in the dataset file so eval/generate can decode:
//
//   byte tokenizer: "byte"
//   char tokenizer: "char:<cp0>,<cp1>,...": the vocabulary's code points, ascending, in decimal
//
// Host code only.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace seqmix::data {

enum class TokenizerKind { Byte, Char };

// "byte" / "char".
const char* tokenizer_kind_name(TokenizerKind k);
// Parses "byte" / "char"; anything else is Error(Value) naming the accepted kinds.
TokenizerKind parse_tokenizer_kind(std::string_view name);

// Decodes UTF-8 into code points. Invalid UTF-8 (bad lead or continuation bytes, overlong forms,
// surrogates, values above U+10FFFF, truncated sequences) is Error(Data) naming `what` (a file
// name, for messages) and the byte offset.
std::vector<uint32_t> utf8_decode(std::string_view text, std::string_view what = "text");
// Appends the UTF-8 encoding of code point `cp` (must be a valid scalar value) to `out`.
void utf8_append(std::string& out, uint32_t cp);

class Tokenizer {
 public:
  // The byte tokenizer (the default-constructed tokenizer is this one).
  Tokenizer() = default;
  static Tokenizer byte();
  // A char tokenizer whose vocabulary is the set of code points occurring in `texts` (UTF-8).
  // Error(Data) when the texts hold no characters or are not valid UTF-8.
  static Tokenizer char_level(const std::vector<std::string_view>& texts);
  // A char tokenizer over the given code points (sorted and de-duplicated here).
  static Tokenizer char_from_code_points(std::vector<uint32_t> code_points);
  // Builds the tokenizer of `kind` for a corpus (the byte tokenizer ignores the texts).
  static Tokenizer build(TokenizerKind kind, const std::vector<std::string_view>& texts);
  // Inverse of description(); Error(Data) on a malformed description.
  static Tokenizer from_description(std::string_view description);

  TokenizerKind kind() const { return kind_; }
  const char* kind_name() const { return tokenizer_kind_name(kind_); }
  int64_t vocab_size() const;
  std::string description() const;

  // Text -> token ids in [0, vocab_size). For the char tokenizer, invalid UTF-8 is Error(Data)
  // and a character outside the vocabulary is Error(Value) naming it (U+XXXX) and its offset.
  std::vector<int32_t> encode(std::string_view text) const;
  // Token ids -> text. An id outside [0, vocab_size) is Error(Value) naming it and its index.
  std::string decode(std::span<const int64_t> ids) const;
  std::string decode(std::span<const int32_t> ids) const;

  // The vocabulary's code points (char tokenizer; empty for byte).
  const std::vector<uint32_t>& code_points() const { return code_points_; }

 private:
  template <typename I>
  std::string decode_impl(std::span<const I> ids) const;

  TokenizerKind kind_ = TokenizerKind::Byte;
  std::vector<uint32_t> code_points_;               // char: id -> code point (ascending)
  std::unordered_map<uint32_t, int32_t> id_of_cp_;  // char: code point -> id
};

}  // namespace seqmix::data
