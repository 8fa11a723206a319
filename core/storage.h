// A refcounted block of memory on one device, shared by every view of it. It also carries the
// version counter that autograd uses to detect in-place changes of saved tensors.
#pragma once
#include <cstdint>

#include "core/allocator.h"

namespace seqmix {

class Storage {
 public:
  Storage(DataPtr data, size_t nbytes, Device device)
      : data_(std::move(data)), nbytes_(nbytes), device_(device) {}
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_.get(); }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

  // Incremented by every in-place operation on any view of this storage.
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  DataPtr data_;
  size_t nbytes_;
  Device device_;
  uint64_t version_ = 0;
};

}  // namespace seqmix
