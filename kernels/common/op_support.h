// The result of an `<op>_supports(args)` query: limits are data. A kernel that cannot compute a
// request exactly says why; the dispatcher raises Error(Unsupported) with that reason and tests
// skip with it.
#pragma once
#include <string>

namespace seqmix {

struct Support {
  bool ok = true;
  std::string why;
  static Support yes() { return {}; }
  static Support no(std::string reason) { return {false, std::move(reason)}; }
  explicit operator bool() const { return ok; }
};

// An Auto request of a family with a chunked and a recurrent implementation is supported when
// either one takes it; otherwise both reasons are given.
inline Support either_supports(Support chunked, const Support& recurrent) {
  if (chunked.ok) return chunked;
  if (recurrent.ok) return recurrent;
  return Support::no("chunked: " + chunked.why + "; recurrent: " + recurrent.why);
}

}  // namespace seqmix
