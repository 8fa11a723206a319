// Where a tensor lives. Safe to include from .cu files.
#pragma once
#include <cstdint>
#include <string>

namespace seqmix {

struct Device {
  enum class Type : uint8_t { CPU, CUDA };
  Type type = Type::CPU;
  int index = 0;

  constexpr Device() = default;
  constexpr Device(Type t, int i = 0) : type(t), index(t == Type::CPU ? 0 : i) {}
  static constexpr Device cpu() { return Device(Type::CPU, 0); }
  static constexpr Device cuda(int i = 0) { return Device(Type::CUDA, i); }

  constexpr bool is_cpu() const { return type == Type::CPU; }
  constexpr bool is_cuda() const { return type == Type::CUDA; }
  constexpr bool operator==(const Device&) const = default;
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

// Parses "cpu", "cuda", "cuda:1". Throws seqmix::Error otherwise.
Device parse_device(const std::string& s);

}  // namespace seqmix
